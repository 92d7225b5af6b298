"""Which channels a member may search with `scope: server`, and whether a public reply may show
a channel's earlier images.

A channel counts when the member can view it and read its history right now, computed by
discord.py from the member's roles and the channel's overwrites; the chat of a voice or stage
channel also needs Connect. Private threads are searched only from inside themselves; NSFW
channels only when asked from an NSFW channel. Archived threads, which discord.py no longer
holds, count by the same rules as active ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import discord


@dataclass(frozen=True)
class ArchivedThread:
    id: int
    parent_id: int
    private: bool


def server_scope(
    member: discord.Member,
    origin: discord.abc.GuildChannel | discord.Thread,
    archived: Iterable[ArchivedThread] = (),
    *,
    by_dm: bool = False,
) -> set[int]:
    guild = member.guild
    # Age-restricted content goes to a DM only once the user has allowed it in their settings,
    # which a bot cannot see (application-commands.mdx, "Using Age-Restricted Commands").
    origin_nsfw = is_nsfw(origin) and not by_dm
    readable: set[int] = set()
    for channel in guild.channels:
        if isinstance(channel, discord.CategoryChannel):
            continue
        if channel.is_nsfw() and not origin_nsfw:
            continue
        if can_read(channel, member):
            readable.add(channel.id)
    # Forum posts are threads; the forum itself holds no messages.
    forums = {c.id for c in guild.channels if isinstance(c, discord.ForumChannel)}
    allowed = readable - forums
    for thread in guild.threads:
        if thread.is_private() or thread.parent_id not in readable:
            continue
        if can_read(thread, member):
            allowed.add(thread.id)
    # Public threads are viewable by whoever views the parent (threads.mdx, "Public & Private
    # Threads"); a private one is searched only from inside, where posting unarchives it.
    allowed |= {t.id for t in archived if not t.private and t.parent_id in readable}
    # Asked from inside it: private threads count only then (but no NSFW one goes to a DM).
    inside = isinstance(origin, discord.Thread) and can_read(origin, member)
    if inside and not (by_dm and is_nsfw(origin)):
        allowed.add(origin.id)
    return allowed


def can_read(channel: discord.abc.GuildChannel | discord.Thread, member: discord.Member) -> bool:
    """Whether `member` (the bot's own `guild.me` included) may read the channel's messages.

    A voice channel's chat also needs Connect (message.mdx, "Get Channel Messages" and "Get
    Channel Message"), and a stage channel is a voice channel (channel.mdx, "Channel Types"):
    discord.py's `permissions_for` leaves View Channel and Read Message History set there.
    """
    permissions = channel.permissions_for(member)
    voice = isinstance(channel, discord.VoiceChannel | discord.StageChannel)
    if voice and not permissions.connect:
        return False
    return permissions.view_channel and permissions.read_message_history


def is_nsfw(channel: object) -> bool:
    """An age-restricted channel, or a thread of one."""
    if isinstance(channel, discord.Thread):
        return channel.parent is not None and channel.parent.is_nsfw()
    return bool(getattr(channel, "nsfw", False))


def may_reply(channel: object) -> bool:
    """Whether the bot may post a reply here unasked (a description, a repost note): replies
    need Read Message History, and a locked thread Manage Threads (threads.mdx, "Locked
    Threads")."""
    if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return False
    perms = channel.permissions_for(channel.guild.me)
    if isinstance(channel, discord.Thread):
        send = perms.send_messages_in_threads and (not channel.locked or perms.manage_threads)
    else:
        send = perms.send_messages
    return can_read(channel, channel.guild.me) and send


def reads_history(channel: object, user: object) -> bool:
    """Whether the asker may read the channel's earlier messages: what `!find` and `!caption`
    with no image show from it. Always in a DM; in a server, by the member's permissions
    there (a channel can grant View Channel without Read Message History)."""
    if isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return isinstance(user, discord.Member) and can_read(channel, user)
    return isinstance(channel, discord.DMChannel | discord.GroupChannel)


def audience_reads_history(channel: object) -> bool:
    """Whether everyone who sees a reply here may also read the channel's earlier messages, so
    that a public reply may show images from them. A channel can grant View Channel without
    Read Message History, which reading the history takes (permissions.mdx, "Bitwise Permission
    Flags"): such members see only what is posted while they look.

    Judged without the member list, which a bot without the members intent does not hold, so
    leaning to no: each role as if it were a member's only one; each member overwrite with the
    member's roles if cached, else with @everyone's alone; and any role's overwrite that takes
    the history away (or an uncached member's that leaves the channel shown), since another of
    a member's roles may show the channel: role overwrites' allows win over their denies, and
    a member's overwrite comes last (permissions.mdx, "Permission Overwrites").
    A thread's permissions are its parent's (permissions.mdx, "Inherited Permissions
    (Threads)"), and a voice channel's chat needs Connect."""
    if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return True  # a DM: the asker alone
    target = channel.parent if isinstance(channel, discord.Thread) else channel
    if target is None:
        return False  # a thread whose parent is not held: nothing to judge by
    guild = target.guild
    # A bot's own role is its alone, and this bot's access is judged apart (bot.chat.access).
    seen = [target.permissions_for(role) for role in guild.roles if not role.is_bot_managed()]
    for who, overwrite in target.overwrites.items():
        takes_history = overwrite.read_message_history is False
        if isinstance(who, discord.Member):
            if not who.bot:
                seen.append(target.permissions_for(who))
        elif isinstance(who, discord.Role):
            if takes_history and not who.is_default() and not who.is_bot_managed():
                return False  # another of a member's roles may show the channel
        elif getattr(who, "type", None) is discord.Role:
            if takes_history:  # a role not in the cache
                return False
        elif takes_history and overwrite.view_channel is not False:
            return False  # a member not in the cache, whose roles may show the channel
        else:
            alone = target.permissions_for(guild.default_role)
            allow, deny = overwrite.pair()
            alone.handle_overwrite(allow.value, deny.value)
            seen.append(alone)
    voice = isinstance(target, discord.VoiceChannel | discord.StageChannel)
    return not any(
        p.view_channel and (p.connect or not voice) and not p.read_message_history for p in seen
    )
