"""Members' reactions, as Discord takes and reports them.

message.mdx, "Create Reaction": reacting needs View Channel and Read Message History, and Add
Reactions when nobody has reacted with that emoji yet; reacting twice with the same emoji
changes nothing. The message's ``reactions`` count it ("Reaction Object"), and the bot hears of
it by MESSAGE_REACTION_ADD (gateway-events.mdx, "Message Reaction Add Event Fields"; in a
server with ``guild_id`` and the reacting ``member``, its user included) only if it asked for
GUILD_MESSAGE_REACTIONS (DIRECT_MESSAGE_REACTIONS in a DM; gateway.mdx, "List of Intents") and
can see the channel.
"""

from __future__ import annotations

from typing import Any

from . import payloads as p

WASTEBASKET = "\U0001f5d1\ufe0f"


class ReactionsMixin:
    """Reactions half of :class:`~tests.fakediscord.FakeDiscord` (uses World's state)."""

    def _init_reactions(self) -> None:
        self._reactors: dict[tuple[int, str], set[int]] = {}  # (message, emoji): users

    async def react(
        self, channel_id: int, message_id: int, user_id: int, emoji: str = WASTEBASKET
    ) -> None:
        """``user_id`` reacts to a stored message with a Unicode ``emoji``."""
        msg = self.messages[channel_id].get(message_id)
        if msg is None:
            raise ValueError(f"no message {message_id} in channel {channel_id}")
        reactors = self._reactors.setdefault((message_id, emoji), set())
        needed = p.VIEW_CHANNEL | p.READ_MESSAGE_HISTORY | (0 if reactors else p.ADD_REACTIONS)
        if self.permissions_for(channel_id, user_id) & needed != needed:
            raise ValueError(f"user {user_id} cannot react with {emoji} in channel {channel_id}")
        if user_id in reactors:
            return
        reactors.add(user_id)
        self._count_reaction(msg, emoji, user_id)
        data: dict[str, Any] = {
            "user_id": str(user_id), "channel_id": str(channel_id),
            "message_id": str(message_id), "emoji": {"id": None, "name": emoji},
            "message_author_id": msg["author"]["id"], "burst": False, "burst_colors": [],
            "type": 0,
        }  # fmt: skip
        guild = self.guild_of(channel_id)
        if guild is not None:
            data["guild_id"] = str(guild.id)
            data["member"] = self.member_payload(guild.id, user_id)
        intent = p.INTENT_GUILD_MESSAGE_REACTIONS if guild else p.INTENT_DIRECT_MESSAGE_REACTIONS
        self._dispatch(
            "MESSAGE_REACTION_ADD",
            data,
            guild_id=guild.id if guild else None,
            channel_id=channel_id,
            intent=intent,
        )
        await self.flush()

    def _count_reaction(self, msg: dict, emoji: str, user_id: int) -> None:
        reactions = msg.setdefault("reactions", [])
        entry = next((r for r in reactions if r["emoji"]["name"] == emoji), None)
        if entry is None:
            entry = {
                "emoji": {"id": None, "name": emoji}, "count": 0,
                "count_details": {"burst": 0, "normal": 0}, "burst_colors": [],
                "me_burst": False, "me": False,
            }  # fmt: skip
            reactions.append(entry)
        entry["count"] += 1
        entry["count_details"]["normal"] += 1
        entry["me"] = entry["me"] or user_id == self.bot_id
