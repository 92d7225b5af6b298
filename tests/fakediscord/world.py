"""The fake Discord's data model: users, guilds, roles, members, channels, threads, messages.

World-building methods are synchronous. When a bot is connected they also dispatch the matching
gateway event (GUILD_CREATE, CHANNEL_CREATE, GUILD_ROLE_CREATE, GUILD_MEMBER_ADD, THREAD_CREATE);
``_dispatch`` is provided by :class:`~tests.fakediscord.gateway.GatewayMixin`. Changes of
permissions are in :mod:`tests.fakediscord.guildchanges`, threads' life in
:mod:`tests.fakediscord.threads`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import payloads as p
from .clock import Clock


@dataclass
class GuildRecord:
    id: int
    name: str
    owner_id: int
    roles: dict[int, dict] = field(default_factory=dict)  # role payloads, @everyone id == guild id
    members: dict[int, dict] = field(
        default_factory=dict
    )  # user id -> {"roles", "joined_at", "nick"}
    channel_ids: list[int] = field(default_factory=list)  # channels and threads, creation order
    bot_role_id: int | None = None
    members_role_id: int = 0  # held by every member but the bot (payloads.MEMBERS_ROLE_PERMISSIONS)


class World:
    """State shared by the REST API, the gateway and the test-facing helpers."""

    base_url: str  # "http://127.0.0.1:PORT", set by start()

    def __init__(self) -> None:
        self.clock = Clock()
        self.ids = p.Snowflakes(self.clock.now)
        self.users: dict[int, dict] = {}
        self.guilds: dict[int, GuildRecord] = {}
        self.channels: dict[int, dict] = {}  # channel/thread/DM payloads
        self.thread_members: dict[int, dict[int, str]] = {}  # thread -> user -> joined at
        self.messages: dict[int, dict[int, dict]] = {}  # channel id -> message id -> payload
        self.closed_dms: set[int] = set()  # users who accept no direct messages from the bot
        self._dm_by_user: dict[int, int] = {}
        self.base_url = "http://127.0.0.1:0"
        self.owner_id = self.add_user("owner")
        self.application_id = self.ids.next()
        self.bot_user = p.user_payload(self.application_id, "Glimpse", bot=True)
        self.users[self.application_id] = self.bot_user
        self.token = f"{self.application_id}.fake.{secrets.token_urlsafe(16)}"

    def _dispatch(self, event: str, data: dict, **route: Any) -> None:  # overridden
        pass

    @property
    def bot_id(self) -> int:
        return self.application_id

    def current_user(self) -> dict:
        """The bot's own user as ``/users/@me`` and READY give it (the spec's UserPIIResponse)."""
        return dict(self.bot_user, verified=True, mfa_enabled=False, email=None, locale="en-US")

    # --- world building -----------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False) -> int:
        """Create a user; returns its id."""
        user_id = self.ids.next()
        self.users[user_id] = p.user_payload(user_id, name, bot=bot)
        return user_id

    def add_guild(
        self,
        name: str,
        *,
        owner_id: int | None = None,
        bot_permissions: int | None = p.DEFAULT_BOT_PERMISSIONS,
    ) -> int:
        """Create a guild owned by ``owner_id`` (default: the application owner).

        The owner and the bot are added as members. The bot gets a managed role with
        ``bot_permissions`` (not ADMINISTRATOR, so channel overwrites apply to it); pass
        ``bot_permissions=None`` to give the bot only @everyone.
        """
        guild_id = self.ids.next()
        owner = self.owner_id if owner_id is None else owner_id
        guild = self.guilds[guild_id] = GuildRecord(guild_id, name, owner)
        guild.roles[guild_id] = p.role_payload(
            guild_id, "@everyone", p.DEFAULT_EVERYONE_PERMISSIONS, 0
        )
        if bot_permissions is not None:
            guild.bot_role_id = self.ids.next()
            guild.roles[guild.bot_role_id] = p.role_payload(
                guild.bot_role_id,
                self.bot_user["username"],
                bot_permissions,
                1,
                managed_for=self.bot_id,
            )
        guild.members_role_id = self.ids.next()
        guild.roles[guild.members_role_id] = p.role_payload(
            guild.members_role_id, "members", p.MEMBERS_ROLE_PERMISSIONS, len(guild.roles)
        )
        self.add_member(guild_id, owner)
        guild.members[self.bot_id] = {
            "roles": [r for r in [guild.bot_role_id] if r],
            "joined_at": self.clock.iso(),
            "nick": None,
        }
        self._dispatch("GUILD_CREATE", {}, guild_create=guild_id)
        return guild_id

    def add_role(self, guild_id: int, name: str, permissions: int) -> int:
        """Create a role; returns its id."""
        guild = self.guilds[guild_id]
        role_id = self.ids.next()
        guild.roles[role_id] = role = p.role_payload(role_id, name, permissions, len(guild.roles))
        self._dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": role}, guild_id=guild_id
        )
        return role_id

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        roles: Sequence[int] = (),
    ) -> None:
        """Add a guild member (GUILD_MEMBER_ADD, needs the members intent); change the roles of
        one with ``set_member_roles``."""
        guild = self.guilds[guild_id]
        held = self.held_roles(guild_id, user_id, roles)
        guild.members[user_id] = {"roles": held, "joined_at": self.clock.iso(), "nick": None}
        data = dict(self.member_payload(guild_id, user_id), guild_id=str(guild_id))
        self._dispatch("GUILD_MEMBER_ADD", data, guild_id=guild_id, intent=p.INTENT_GUILD_MEMBERS)

    def held_roles(self, guild_id: int, user_id: int, roles: Sequence[int]) -> list[int]:
        """`roles`, and the members role for anyone but the bot (an autorole keeps it)."""
        members = self.guilds[guild_id].members_role_id
        extra = [members] if user_id != self.bot_id and members not in roles else []
        return [*extra, *roles]

    def add_channel(
        self,
        guild_id: int,
        name: str,
        *,
        kind: int = p.TEXT,
        parent_id: int | None = None,
        nsfw: bool = False,
        overwrites: Sequence[dict] = (),
        spoiler: bool = False,
    ) -> int:
        """Create a guild channel; ``overwrites``: ``{id, type (0 role/1 member), allow, deny}``;
        ``spoiler``: a spoiler channel (see :meth:`set_spoiler_channel`)."""
        p.check_spoiler_channel(kind, nsfw, spoiler)
        guild = self.guilds[guild_id]
        channel_id = self.ids.next()
        position = sum(
            1 for c in guild.channel_ids if self.channels[c]["type"] not in p.THREAD_TYPES
        )
        channel = p.guild_channel_payload(
            channel_id,
            guild_id,
            name,
            kind,
            position,
            parent_id=parent_id,
            nsfw=nsfw,
            overwrites=list(overwrites),
            flags=p.IS_SPOILER_CHANNEL if spoiler else 0,
        )
        self.channels[channel_id] = channel
        self.messages[channel_id] = {}
        guild.channel_ids.append(channel_id)
        self._dispatch("CHANNEL_CREATE", channel, guild_id=guild_id)
        return channel_id

    def add_thread(
        self,
        parent_id: int,
        name: str,
        *,
        private: bool = False,
        member_ids: Sequence[int] = (),
        owner_id: int | None = None,
        thread_id: int | None = None,
    ) -> int:
        """Create a thread under a text channel; ``member_ids`` are the thread's members (the
        bot sees a private thread only as a member, or with Manage Threads). ``thread_id``:
        the id of the message it is started from (threads.mdx, "Public & Private Threads")."""
        parent = self.channels[parent_id]
        guild = self.guilds[int(parent["guild_id"])]
        thread_id = thread_id or self.ids.next()
        owner = (
            owner_id if owner_id is not None else (member_ids[0] if member_ids else self.owner_id)
        )
        created = p.snowflake_time_iso(thread_id)
        members = dict.fromkeys([owner, *member_ids], created)
        thread = p.thread_payload(
            thread_id, parent, name, owner, private=private, member_count=len(members)
        )
        self.channels[thread_id] = thread
        self.thread_members[thread_id] = members
        self.messages[thread_id] = {}
        guild.channel_ids.append(thread_id)
        self._dispatch(
            "THREAD_CREATE",
            dict(self.thread_view(thread_id), newly_created=True),
            guild_id=guild.id,
            channel_id=thread_id,
        )
        return thread_id

    def dm_channel(self, user_id: int) -> int:
        """The DM channel between the bot and ``user_id`` (created on first use)."""
        if user_id not in self._dm_by_user:
            channel_id = self.ids.next()
            self.channels[channel_id] = p.dm_channel_payload(channel_id, self.users[user_id])
            self.messages[channel_id] = {}
            self._dm_by_user[user_id] = channel_id
        return self._dm_by_user[user_id]

    def bot_role_id(self, guild_id: int) -> int | None:
        """The id of the bot's managed role in ``guild_id`` (None if it has none)."""
        return self.guilds[guild_id].bot_role_id

    # --- lookups and permissions ---------------------------------------------------------------

    def guild_of(self, channel_id: int) -> GuildRecord | None:
        gid = self.channels[channel_id].get("guild_id")
        return self.guilds.get(int(gid)) if gid else None

    def dm_recipient(self, channel_id: int) -> int | None:
        channel = self.channels[channel_id]
        return int(channel["recipients"][0]["id"]) if channel["type"] == p.DM else None

    def guild_permissions(self, guild_id: int, user_id: int) -> int:
        guild = self.guilds[guild_id]
        member = guild.members.get(user_id)
        if member is None:
            return 0
        if user_id == guild.owner_id:
            return p.ALL_PERMISSIONS
        perms = int(guild.roles[guild_id]["permissions"])
        for rid in member["roles"]:
            if rid in guild.roles:
                perms |= int(guild.roles[rid]["permissions"])
        return p.ALL_PERMISSIONS if perms & p.ADMINISTRATOR else perms

    def permissions_for(self, channel_id: int, user_id: int) -> int:
        """Permissions of ``user_id`` in a channel/thread/DM, computed as Discord does."""
        channel = self.channels[channel_id]
        if channel["type"] == p.DM:
            return (
                p.DM_PERMISSIONS if user_id in (self.bot_id, self.dm_recipient(channel_id)) else 0
            )
        guild = self.guilds[int(channel["guild_id"])]
        if user_id not in guild.members:
            return 0
        is_thread = channel["type"] in p.THREAD_TYPES
        target = self.channels[int(channel["parent_id"])] if is_thread else channel
        perms = self.guild_permissions(guild.id, user_id)
        if perms != p.ALL_PERMISSIONS:
            perms = p.apply_overwrites(
                perms,
                target["permission_overwrites"],
                guild.id,
                guild.members[user_id]["roles"],
                user_id,
            )
        perms = p.implicit_permissions(perms, target["type"])
        outsider = user_id not in self.thread_members.get(channel_id, {user_id})
        if channel["type"] == p.PRIVATE_THREAD and outsider and not perms & p.MANAGE_THREADS:
            perms &= ~p.VIEW_CHANNEL  # (discord.py's Thread.permissions_for ignores this)
        return perms

    def can_see(self, channel_id: int, user_id: int) -> bool:
        return bool(self.permissions_for(channel_id, user_id) & p.VIEW_CHANNEL)

    # --- payloads ----------------------------------------------------------------------------

    def member_payload(
        self, guild_id: int, user_id: int, *, with_user: bool = True, permissions: bool = False
    ) -> dict:
        rec = self.guilds[guild_id].members[user_id]
        perms = self.guild_permissions(guild_id, user_id) if permissions else None
        return p.member_payload(
            self.users[user_id] if with_user else None,
            rec["roles"],
            rec["joined_at"],
            nick=rec["nick"],
            permissions=perms,
        )

    def guild_payload(self, guild_id: int, *, all_members: bool) -> dict:
        """The GUILD_CREATE payload as the bot sees it."""
        g = self.guilds[guild_id]
        visible = [c for c in g.channel_ids if self.channels[c]["type"] not in p.THREAD_TYPES]
        threads = [
            self.thread_view(c, gateway=True)
            for c in g.channel_ids
            if self.channels[c]["type"] in p.THREAD_TYPES
            and not self.channels[c]["thread_metadata"]["archived"]
            and self.can_see(c, self.bot_id)
        ]
        member_ids = list(g.members) if all_members else [self.bot_id]
        return {
            "id": str(g.id), "name": g.name, "icon": None, "splash": None,
            "discovery_splash": None, "banner": None, "description": None,
            "owner_id": str(g.owner_id), "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "premium_subscription_count": 0, "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US", "features": [], "application_id": None,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "safety_alerts_channel_id": None,
            "vanity_url_code": None, "max_members": 500000, "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50, "max_presences": None, "home_header": None,
            "region": "deprecated", "widget_enabled": False, "widget_channel_id": None,
            "nsfw": False, "incidents_data": None,
            "roles": list(g.roles.values()), "emojis": [], "stickers": [],
            "joined_at": g.members[self.bot_id]["joined_at"], "large": False,
            "unavailable": False, "member_count": len(g.members), "voice_states": [],
            "members": [self.member_payload(g.id, uid) for uid in member_ids],
            "channels": [self.channels[c] for c in visible],
            "threads": threads, "presences": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }  # fmt: skip

    def thread_view(self, thread_id: int, *, gateway: bool = False) -> dict:
        """A thread as the bot is shown it: with its own thread member object when it is a member
        (threads.mdx, "Syncing for the current user"; GUILD_CREATE leaves out the member's
        ``id`` and ``user_id``, channel.mdx "Thread Member Structure")."""
        thread = dict(self.channels[thread_id])
        joined = self.thread_members.get(thread_id, {}).get(self.bot_id)
        if joined is not None:
            member: dict[str, Any] = {"join_timestamp": joined, "flags": 0}
            if not gateway:
                member.update(id=str(thread_id), user_id=str(self.bot_id))
            thread["member"] = member
        return thread
