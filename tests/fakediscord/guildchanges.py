"""Changes of permissions, and the gateway events they cause (threads.mdx, "Losing Access to
Channels": a Guild Role Update, Guild Member Update or Channel Update is all the bot gets).

- ``set_role_permissions`` / ``set_everyone_permissions``: GUILD_ROLE_UPDATE;
- ``delete_role``: GUILD_ROLE_DELETE (members lose the role);
- ``set_overwrites``: CHANNEL_UPDATE (the inner payload is the whole channel);
- ``set_spoiler_channel``: CHANNEL_UPDATE with the IS_SPOILER_CHANNEL flag set or cleared;
- ``set_member_roles``: GUILD_MEMBER_UPDATE, which the bot receives for itself only: other
  members' updates need the privileged GUILD_MEMBERS intent (gateway.mdx, "Caveats"), which the
  bot does not ask for; their roles arrive with each message and interaction instead.

When a change lets the bot see channels it could not see before, THREAD_LIST_SYNC follows with
their active threads (threads.mdx, "Gaining Access to Channels"). Like world building, these are
synchronous: the events are queued for the bot (``await server.flush()`` waits for them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import payloads as p


class GuildChangesMixin:
    """Permission changes of :class:`~tests.fakediscord.FakeDiscord` (uses World's state)."""

    def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        """Change a role's permissions (GUILD_ROLE_UPDATE)."""

        def change() -> None:
            role = self.guilds[guild_id].roles[role_id]
            role["permissions"] = str(permissions)
            data = {"guild_id": str(guild_id), "role": role}
            self._dispatch("GUILD_ROLE_UPDATE", data, guild_id=guild_id)

        self._syncing_access(guild_id, change)

    def set_everyone_permissions(self, guild_id: int, permissions: int) -> None:
        """Change @everyone's permissions (GUILD_ROLE_UPDATE)."""
        self.set_role_permissions(guild_id, guild_id, permissions)

    def grant_bot(self, guild_id: int, permissions: int) -> None:
        """Give the bot's role ``permissions`` on top of what it has (GUILD_ROLE_UPDATE)."""
        role_id = self.guilds[guild_id].bot_role_id
        assert role_id is not None, "the bot has no role in this guild"
        current = int(self.guilds[guild_id].roles[role_id]["permissions"])
        self.set_role_permissions(guild_id, role_id, current | permissions)

    def delete_role(self, guild_id: int, role_id: int) -> None:
        """Delete a role; its members lose it (GUILD_ROLE_DELETE)."""
        if role_id == guild_id or self.guilds[guild_id].roles[role_id]["managed"]:
            raise ValueError("@everyone and a bot's managed role cannot be deleted")

        def change() -> None:
            guild = self.guilds[guild_id]
            del guild.roles[role_id]
            for member in guild.members.values():
                if role_id in member["roles"]:
                    member["roles"].remove(role_id)
            data = {"guild_id": str(guild_id), "role_id": str(role_id)}
            self._dispatch("GUILD_ROLE_DELETE", data, guild_id=guild_id)

        self._syncing_access(guild_id, change)

    def set_member_roles(self, guild_id: int, user_id: int, roles: Sequence[int]) -> None:
        """Change a member's roles (GUILD_MEMBER_UPDATE, for the bot itself only); anyone but
        the bot keeps the members role."""

        def change() -> None:
            self.guilds[guild_id].members[user_id]["roles"] = self.held_roles(
                guild_id, user_id, roles
            )
            member = self.member_payload(guild_id, user_id)
            data = dict(member, guild_id=str(guild_id))
            intent = 0 if user_id == self.bot_id else p.INTENT_GUILD_MEMBERS
            self._dispatch("GUILD_MEMBER_UPDATE", data, guild_id=guild_id, intent=intent)

        self._syncing_access(guild_id, change)

    def set_overwrites(self, channel_id: int, overwrites: Sequence[dict]) -> None:
        """Replace a channel's permission overwrites (CHANNEL_UPDATE);
        ``overwrites``: ``{id, type (0 role/1 member), allow, deny}``."""
        channel = self.channels[channel_id]
        if channel["type"] in p.THREAD_TYPES:
            raise ValueError("threads have no overwrites; change the parent channel's")
        guild_id = int(channel["guild_id"])

        def change() -> None:
            channel["permission_overwrites"] = [p.overwrite_payload(o) for o in overwrites]
            self._dispatch("CHANNEL_UPDATE", channel, guild_id=guild_id)

        self._syncing_access(guild_id, change)

    def set_spoiler_channel(self, channel_id: int, spoiler: bool) -> None:
        """Turn IS_SPOILER_CHANNEL on or off (CHANNEL_UPDATE; channel.mdx, "Channel Flags")."""
        channel = self.channels[channel_id]
        p.check_spoiler_channel(channel["type"], channel["nsfw"], spoiler)
        flags = channel["flags"] & ~p.IS_SPOILER_CHANNEL
        channel["flags"] = flags | (p.IS_SPOILER_CHANNEL if spoiler else 0)
        self._dispatch("CHANNEL_UPDATE", channel, guild_id=int(channel["guild_id"]))

    def _syncing_access(self, guild_id: int, change: Callable[[], None]) -> None:
        """Apply ``change``; THREAD_LIST_SYNC for the channels the bot can see only since."""
        guild = self.guilds[guild_id]
        plain = [c for c in guild.channel_ids if self.channels[c]["type"] not in p.THREAD_TYPES]
        before = {c for c in plain if self.can_see(c, self.bot_id)}
        change()
        if self.bot_id not in guild.members:
            return
        gained = [
            c
            for c in plain
            if c in self.channels and c not in before and self.can_see(c, self.bot_id)
        ]
        if gained:
            self._dispatch(
                "THREAD_LIST_SYNC", self._thread_list(guild_id, gained), guild_id=guild_id
            )

    def _thread_list(self, guild_id: int, parent_ids: list[int]) -> dict[str, Any]:
        threads = [
            c
            for c in self.guilds[guild_id].channel_ids
            if self.channels[c]["type"] in p.THREAD_TYPES
            and int(self.channels[c]["parent_id"]) in parent_ids
            and not self.channels[c]["thread_metadata"]["archived"]
            and self.can_see(c, self.bot_id)
        ]
        members = [
            {"id": str(t), "user_id": str(self.bot_id), "join_timestamp": joined, "flags": 0}
            for t in threads
            if (joined := self.thread_members.get(t, {}).get(self.bot_id)) is not None
        ]
        return {
            "guild_id": str(guild_id),
            "channel_ids": [str(c) for c in parent_ids],
            "threads": [self.channels[t] for t in threads],
            "members": members,
        }
