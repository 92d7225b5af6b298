"""What members (and time) do: post, edit, forward, delete; link previews; the clock moving on.

Each call stores the change, dispatches the gateway event to the connected bot (if any) and
returns once the frame is written to its socket. A member's link to an image that
``host_on_web`` knows, or to a page that ``host_page`` knows, gets its preview about a second
later, by MESSAGE_UPDATE, as Discord unfurls links after the message is created (the preview's
image is on Discord's external proxy, see :mod:`tests.fakediscord.media`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any

from . import payloads as p

# A link ends before trailing punctuation or a closing bracket, as in simple-markdown's url
# rule, which Discord's markdown follows (an assumption: Discord's docs do not say), so the
# link in "(https://…)" or "see https://….png." is the address alone.
_LINK = re.compile(r"<?https?://[^\s<]+[^<.,:;\"')\]\s]")
Attachment = p.Upload | tuple[Any, ...]


class EventsMixin:
    """Member actions of :class:`~tests.fakediscord.FakeDiscord` (uses World's state)."""

    def _init_events(self) -> None:
        self.preview_delay = 1.0
        self._previews: set[asyncio.Task[None]] = set()
        self._suppressed: dict[int, list[dict]] = {}  # message id -> the embeds it hides

    def _check_poster(self, channel_id: int, author_id: int, webhook: bool) -> None:
        guild = self.guild_of(channel_id)
        if guild is None or webhook:
            return
        if author_id not in guild.members:
            raise ValueError(f"user {author_id} is not a member of guild {guild.id}")
        thread = self.channels[channel_id]["type"] in p.THREAD_TYPES
        needed = p.VIEW_CHANNEL | (p.SEND_MESSAGES_IN_THREADS if thread else p.SEND_MESSAGES)
        if self.permissions_for(channel_id, author_id) & needed != needed:
            raise ValueError(f"user {author_id} cannot post in channel {channel_id}")

    async def post_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        attachments: Sequence[Attachment] = (),
        embeds: Sequence[dict] = (),
        reply_to: int | None = None,
        webhook: bool = False,
    ) -> dict:
        """A member (or, with ``webhook=True``, a webhook whose id is ``author_id``) posts.

        ``attachments`` are :class:`~tests.fakediscord.payloads.Upload` or ``(filename, bytes,
        content_type)`` tuples, each served at its ``url``. Only webhooks send ``embeds`` (as
        Discord stores them: type ``rich``, images proxied); members post links, whose previews
        arrive later. Posting in an archived thread unarchives it. Returns the stored payload.
        """
        self._check_poster(channel_id, author_id, webhook)
        if embeds and not webhook:
            raise ValueError("members cannot send embeds: post a link, its preview follows")
        uploads = [p.Upload(*a) for a in attachments]
        self._before_post(channel_id, author_id)
        atts = [
            self.store_attachment(
                channel_id,
                u.filename,
                u.data,
                u.content_type,
                description=u.description,
                spoiler=u.spoiler,
            )
            for u in uploads
        ]
        msg = self.build_message(
            channel_id,
            author_id,
            content,
            attachments=atts,
            embeds=[self.fill_embed(e, atts) for e in embeds],
            reply_to=reply_to,
            webhook_id=author_id if webhook else None,
        )
        self.store_message(msg)
        self._dispatch_message("MESSAGE_CREATE", msg)
        self._unfurl_later(msg)
        await self.flush()
        return msg

    async def forward_message(
        self, channel_id: int, author_id: int, source_channel_id: int, source_message_id: int
    ) -> dict:
        """A member forwards a message (message.mdx, "Forwards"): ``message_reference`` of type
        1, flag HAS_SNAPSHOT, and the source as it is now in ``message_snapshots``."""
        self._check_poster(channel_id, author_id, False)
        if not self.can_see(source_channel_id, author_id):
            raise ValueError(f"user {author_id} cannot see channel {source_channel_id}")
        forward = self.forward_of(source_channel_id, source_message_id)
        self._before_post(channel_id, author_id)
        msg = self.build_message(channel_id, author_id, flags=p.HAS_SNAPSHOT, **forward)
        self.store_message(msg)
        self._dispatch_message("MESSAGE_CREATE", msg)
        await self.flush()
        return msg

    async def start_thread_from_message(
        self, channel_id: int, message_id: int, author_id: int, name: str
    ) -> int:
        """A member starts a public thread from a message (threads.mdx): the thread has the
        message's id, the message gets HAS_THREAD (message.mdx, "Message Flags"), and the
        thread's first message is a THREAD_STARTER_MESSAGE (type 21), with no content,
        embeds or attachments, only a reference to the message, resolved in
        ``referenced_message`` (message.mdx, "Thread starter messages"). The parent channel gets
        a THREAD_CREATED message (type 18) named as the thread, referring to it (threads.mdx,
        "New Message Types": sent for a thread started from any but the newest messages).
        Assumed, as discord.py's ``Thread.starter_message`` says: the first message has the
        thread's id too; and it comes with no MESSAGE_CREATE."""
        source = self.messages[channel_id][message_id]
        thread_id = self.add_thread(channel_id, name, owner_id=author_id, thread_id=message_id)
        source["flags"] |= p.HAS_THREAD
        starter = self.build_message(thread_id, author_id, msg_type=p.THREAD_STARTER_MESSAGE)
        starter.update(self.reference_to(channel_id, message_id))
        starter["id"], starter["timestamp"] = str(thread_id), source["timestamp"]
        # Not counted: message_count and total_message_sent leave out the initial message
        # (channel.mdx, "Channel Structure").
        self.messages[thread_id][thread_id] = starter
        created = self.build_message(channel_id, author_id, name, msg_type=p.THREAD_CREATED)
        created["message_reference"] = {"type": 0, "channel_id": str(thread_id)}
        created["message_reference"]["guild_id"] = self.channels[channel_id]["guild_id"]
        self.store_message(created)
        self._dispatch_message("MESSAGE_CREATE", created)
        await self.flush()
        return thread_id

    async def other_app_reply(
        self, channel_id: int, app_user_id: int, asker_id: int, attachments: Sequence[Attachment]
    ) -> dict:
        """Another application answers a member's slash command with images: a type 20 message
        (message.mdx, "Message Types") from its bot user, with ``application_id`` (message.mdx,
        "Message Object": set on an interaction's messages) and ``webhook_id`` (responses are
        webhooks: receiving-and-responding.mdx, "Responding to an Interaction"), both the
        application's id, which this server, like its own bot's, makes the bot user's id; and
        ``interaction_metadata`` whose ``authorizing_integration_owners`` maps guild install
        ("0") to the guild (message.mdx, "Message Interaction Metadata Object")."""
        atts = [self.store_attachment(channel_id, *a[:3]) for a in attachments]
        interaction_id = self.ids.next()
        meta = {
            "id": str(interaction_id), "type": 2, "user": self.users[asker_id],
            "authorizing_integration_owners": {"0": str(self.guild_of(channel_id).id)},
        }  # fmt: skip
        msg = self.build_message(
            channel_id, app_user_id, attachments=atts, webhook_id=app_user_id,
            msg_type=p.CHAT_INPUT_COMMAND, application_id=str(app_user_id),
            interaction_metadata=meta,
        )  # fmt: skip
        self.store_message(msg)
        self._dispatch_message("MESSAGE_CREATE", msg)
        await self.flush()
        return msg

    async def edit_message(
        self,
        channel_id: int,
        message_id: int,
        *,
        content: str | None = None,
        keep_attachment_ids: list[int] | None = None,
        attachment_changes: dict[int, dict] | None = None,
    ) -> dict:
        """A member edits a message (MESSAGE_UPDATE): new ``content``; ``keep_attachment_ids``
        drops the other attachments; ``attachment_changes`` maps an attachment id to
        ``{"description": str | None, "is_spoiler": bool}``."""
        self._refuse_if_archived(channel_id)
        msg = self.messages[channel_id][message_id]
        if content is not None:
            msg["content"] = content
            msg["mentions"] = [
                self.users[int(u)] for u in p.USER_MENTION.findall(content) if int(u) in self.users
            ]
            # A link edited out takes its preview along (assumed, as Discord's client shows it:
            # the docs do not say); a webhook's own embeds stay.
            links = {u.removesuffix("||") for u in _LINK.findall(content)}
            msg["embeds"] = [e for e in msg["embeds"] if e["type"] == "rich" or e["url"] in links]
        if keep_attachment_ids is not None:
            keep = {str(a) for a in keep_attachment_ids}
            msg["attachments"] = [a for a in msg["attachments"] if a["id"] in keep]
        for att in msg["attachments"]:
            self._edit_attachment(att, (attachment_changes or {}).get(int(att["id"]), {}))
        msg["edited_timestamp"] = self.clock.iso()
        self._dispatch_message("MESSAGE_UPDATE", msg)
        if content is not None:
            self._unfurl_later(msg)
        await self.flush()
        return msg

    async def suppress_embeds(
        self, channel_id: int, message_id: int, *, suppressed: bool = True
    ) -> dict:
        """Its author or a moderator removes a message's previews, or brings them back: the
        SUPPRESS_EMBEDS flag, under which Discord serializes no embeds (message.mdx, "Message
        Flags"; it can be set and unset, "Edit Message"). The message does not read as edited
        (an assumption: Discord's client shows no "(edited)" for it)."""
        self._refuse_if_archived(channel_id)
        msg = self.messages[channel_id][message_id]
        if suppressed and not msg["flags"] & p.SUPPRESS_EMBEDS:
            self._suppressed[message_id], msg["embeds"] = msg["embeds"], []
            msg["flags"] |= p.SUPPRESS_EMBEDS
        elif not suppressed and msg["flags"] & p.SUPPRESS_EMBEDS:
            msg["embeds"] = self._suppressed.pop(message_id, [])
            msg["flags"] &= ~p.SUPPRESS_EMBEDS
        self._dispatch_message("MESSAGE_UPDATE", msg)
        await self.flush()
        return msg

    async def delete_message(self, channel_id: int, message_id: int) -> None:
        """Delete a stored message (MESSAGE_DELETE)."""
        if self.messages[channel_id].pop(message_id, None) is not None:
            self._count_removed(channel_id, 1)
        self._orphan_thread_of(message_id)
        data = {"id": str(message_id), "channel_id": str(channel_id)}
        guild = self.guild_of(channel_id)
        if guild is not None:
            data["guild_id"] = str(guild.id)
        intent = p.INTENT_GUILD_MESSAGES if guild else p.INTENT_DIRECT_MESSAGES
        self._dispatch(
            "MESSAGE_DELETE",
            data,
            guild_id=guild.id if guild else None,
            channel_id=channel_id,
            intent=intent,
        )
        await self.flush()

    async def bulk_delete(self, channel_id: int, message_ids: list[int]) -> None:
        """Delete several messages at once (MESSAGE_DELETE_BULK)."""
        removed = [m for m in message_ids if self.messages[channel_id].pop(m, None) is not None]
        self._count_removed(channel_id, len(removed))
        for message_id in removed:
            self._orphan_thread_of(message_id)
        guild = self.guild_of(channel_id)
        data = {"ids": [str(m) for m in message_ids], "channel_id": str(channel_id)}
        if guild is not None:
            data["guild_id"] = str(guild.id)
        self._dispatch(
            "MESSAGE_DELETE_BULK",
            data,
            guild_id=guild.id if guild else None,
            channel_id=channel_id,
            intent=p.INTENT_GUILD_MESSAGES,
        )
        await self.flush()

    def _orphan_thread_of(self, message_id: int) -> None:
        """A thread started from the deleted message is orphaned: its first message's
        reference resolves to null (message.mdx, "Message Object", note 4)."""
        starter = self.messages.get(message_id, {}).get(message_id)
        if starter is not None and starter["type"] == p.THREAD_STARTER_MESSAGE:
            starter["referenced_message"] = None

    def _count_removed(self, channel_id: int, count: int) -> None:
        channel = self.channels[channel_id]
        if channel["type"] in p.THREAD_TYPES:  # threads.mdx, "Thread Fields"
            channel["message_count"] = max(channel["message_count"] - count, 0)

    async def delete_channel(self, channel_id: int) -> None:
        """Delete a channel or thread (CHANNEL_DELETE / THREAD_DELETE) with its messages."""
        channel = self.channels[channel_id]
        guild = self.guild_of(channel_id)
        if channel["type"] in p.THREAD_TYPES:
            data = {k: channel[k] for k in ("id", "guild_id", "parent_id", "type")}
            self._dispatch("THREAD_DELETE", data, guild_id=guild.id, channel_id=channel_id)  # type: ignore[union-attr]
        else:
            self._dispatch("CHANNEL_DELETE", channel, guild_id=guild.id if guild else None)
        children = [
            c
            for c, ch in self.channels.items()
            if ch.get("parent_id") == str(channel_id) and ch["type"] in p.THREAD_TYPES
        ]
        for cid in [channel_id, *children]:
            self.channels.pop(cid)
            self.messages.pop(cid, None)
            if guild is not None:
                guild.channel_ids.remove(cid)
        await self.flush()

    async def remove_bot_from_guild(self, guild_id: int) -> None:
        """Kick the bot from a guild (GUILD_DELETE without ``unavailable``)."""
        self._dispatch("GUILD_DELETE", {"id": str(guild_id)}, guild_id=guild_id)
        self.guilds[guild_id].members.pop(self.bot_id, None)
        await self.flush()

    async def advance(self, seconds: float) -> None:
        """Move the server's clock on: interaction tokens and attachment URLs age, idle threads
        archive (THREAD_UPDATE)."""
        self.clock.advance(seconds)
        self._archive_idle_threads()
        await self.flush()

    # --- link previews --------------------------------------------------------------------------

    def _unfurl_later(self, msg: dict) -> None:
        # A link in angle brackets is not unfurled; one under a spoiler cover (`||link||`) is,
        # covered. Only a poster with Embed Links gets previews (permissions.mdx, "Bitwise
        # Permission Flags", EMBED_LINKS).
        found = [u.removesuffix("||") for u in _LINK.findall(msg["content"])]
        links = [u for u in found if not u.startswith("<")]
        images = [
            u
            for u in dict.fromkeys(links)
            if (self.web.get(u, (b"", None))[1] or "").startswith("image/") or u in self.pages
        ]
        poster = int(msg["author"]["id"])
        embeds = self.permissions_for(int(msg["channel_id"]), poster) & p.EMBED_LINKS
        if not images or msg["flags"] & p.SUPPRESS_EMBEDS or not embeds:
            return
        task = asyncio.get_running_loop().create_task(self._unfurl(msg, images))
        self._previews.add(task)
        task.add_done_callback(self._previews.discard)

    async def _unfurl(self, msg: dict, urls: list[str]) -> None:
        await asyncio.sleep(self.preview_delay)
        channel_id, message_id = int(msg["channel_id"]), int(msg["id"])
        if self.messages.get(channel_id, {}).get(message_id) is not msg:
            return  # deleted meanwhile
        still = {u.removesuffix("||") for u in _LINK.findall(msg["content"])}
        urls = [u for u in urls if u in still]  # not one edited out meanwhile
        previews = [self._preview(u) for u in urls]
        shown = {e.get("url") for e in msg["embeds"]}
        msg["embeds"] = msg["embeds"] + [e for e in previews if e["url"] not in shown]
        self._dispatch_message("MESSAGE_UPDATE", msg)
        await self.flush()

    def _preview(self, url: str) -> dict:
        """A link to an image shows the image (type ``image``, its picture as the thumbnail); a
        link to a page shows an article with the picture the page names (message.mdx, "Embed
        Types"; a large picture is the embed's ``image``)."""
        if url in self.pages:
            image = self.embed_media(self.pages[url])
            return {"type": "article", "url": url, "title": url, "image": image}
        return {"type": "image", "url": url, "thumbnail": self.embed_media(url)}

    async def previews_settled(self) -> None:
        """Wait until every link preview due has arrived."""
        while self._previews:
            await asyncio.gather(*list(self._previews), return_exceptions=True)

    async def _cancel_previews(self) -> None:
        for task in list(self._previews):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(self._previews), return_exceptions=True)
