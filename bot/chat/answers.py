"""Delivering a command's answer: as its reply, by direct message, or, when the interaction's
token has expired, in the channel (a public answer) or by direct message (a private one)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import discord
from discord.ext import commands

from bot import wording
from bot.chat.fitting import clip
from bot.chat.permissions import is_nsfw, may_reply
from bot.chat.search import Reply

log = logging.getLogger(__name__)

# A token lives 15 minutes (receiving-and-responding.mdx, "Interaction Callback"); after that
# its webhook routes answer 401 with code 50027 or 404 with code 10015
# (opcodes-and-status-codes.mdx, "JSON Error Codes").
TOKEN_EXPIRED = {(401, 50027), (404, 10015)}
UNKNOWN_MESSAGE = 10008  # (ibid.)

# A deferral's loading message ("thinking") is filled by editing it ("Edit Original Interaction
# Response"): a followup would fill it too, but only for backwards compatibility, which is
# deprecated (receiving-and-responding.mdx, "Create Followup Message"). It keeps the visibility
# the defer chose, so an answer of the other visibility deletes it first ("Delete Original
# Interaction Response") and follows up as a message of its own. Until an answer is sent, the
# loading message is still there: an error's reply after a refused answer must deal with it.
LOADING = "glimpse.loading"  # in `Interaction.extras`: whether it is private, while unfilled
# A public loading message's id, from the callback's `response_message_id`
# (receiving-and-responding.mdx, "Interaction Callback Object"): once the token has expired, the
# answer is posted in the channel as a reply to it.
LOADING_ID = "glimpse.loading_id"

Person = discord.User | discord.Member

# The `extras` of a command that runs even where the bot may not reply (a member's choices
# about their own images must take effect); its answer comes by direct message there.
ANYWHERE = {"answers_by_dm_where_it_cannot_reply": True}


def runs_anywhere(command: object) -> bool:
    return isinstance(command, commands.Command) and command.extras == ANYWHERE


async def defer(interaction: discord.Interaction | None, *, private: bool = False) -> None:
    """Acknowledges a slash command or menu ("thinking"); nothing for a text command."""
    if interaction is None:
        return
    callback = await interaction.response.defer(thinking=True, ephemeral=private)
    interaction.extras[LOADING] = private
    if callback is not None and not private:
        interaction.extras[LOADING_ID] = callback.message_id


async def _send(
    interaction: discord.Interaction, content: str, embeds: Sequence[discord.Embed], private: bool
) -> None:
    """The interaction's answer: its response, its loading message filled, or a followup."""
    loading = interaction.extras.get(LOADING)
    if not interaction.response.is_done():
        await interaction.response.send_message(
            content or None, embeds=list(embeds), ephemeral=private
        )
    elif loading == private:
        try:
            await interaction.edit_original_response(content=content or None, embeds=list(embeds))
        except discord.NotFound as exc:
            if exc.code != UNKNOWN_MESSAGE:
                raise
            # A moderator deleted the loading message: the answer comes as one of its own.
            await interaction.followup.send(content, embeds=list(embeds), ephemeral=private)
    else:
        if loading is not None:
            with contextlib.suppress(discord.NotFound):  # deleted already (a moderator can)
                await interaction.delete_original_response()
            interaction.extras[LOADING] = None
        await interaction.followup.send(content, embeds=list(embeds), ephemeral=private)
    interaction.extras[LOADING] = None


def token_expired(exc: discord.HTTPException) -> bool:
    return (exc.status, exc.code) in TOKEN_EXPIRED


def command_deleted(exc: discord.HTTPException) -> bool:
    """Discord refused a reply to a message that is gone (message.mdx, "Message Reference
    Structure": fail_if_not_exists, default true): 400, code 50035, on `message_reference`."""
    return exc.status == 400 and exc.code == 50035 and "In message_reference:" in exc.text


async def reply(
    ctx: commands.Context[Any],
    content: str,
    embeds: Sequence[discord.Embed] = (),
    *,
    private: bool = False,
) -> None:
    """The command's reply; `private` makes a slash command's reply ephemeral. Where the bot
    may not reply, a command that runs anyway answers by direct message."""
    if ctx.interaction is None and ctx.guild is not None and not may_reply(ctx.channel):
        await direct_message(ctx.author, content, embeds)
        return
    if ctx.interaction is None:
        content, embeds = _as_text_without_embed_links(ctx.channel, content, embeds)
    content = clip(content)
    try:
        if ctx.interaction is not None:
            await _send(ctx.interaction, content, embeds, private)
        else:
            await ctx.reply(content or None, embeds=list(embeds), mention_author=False)
    except discord.HTTPException as exc:
        if ctx.interaction is None and command_deleted(exc):
            # Deleted before its answer: the asker took the question back, and an image it
            # carried is gone, so its caption is not posted on its own either.
            log.info("command message %s was deleted before its answer", ctx.message.id)
            return
        if ctx.interaction is None or not token_expired(exc):
            raise
        loading = ctx.interaction.extras.get(LOADING_ID)
        await _deliver_late(ctx.channel, ctx.author, content, embeds, private, loading)


async def respond(interaction: discord.Interaction, content: str, *, private: bool) -> None:
    """The interaction's response, or once it was deferred, its loading message filled."""
    content = clip(content)
    try:
        await _send(interaction, content, (), private)
    except discord.HTTPException as exc:
        if not token_expired(exc):
            raise
        loading = interaction.extras.get(LOADING_ID)
        await _deliver_late(interaction.channel, interaction.user, content, (), private, loading)


async def direct_message(user: Person, content: str, embeds: Sequence[discord.Embed] = ()) -> bool:
    """False when the user takes no direct messages from the bot (403, code 50007)."""
    try:
        await user.send(clip(content) or None, embeds=list(embeds))
    except discord.Forbidden:
        log.info("user %s takes no direct messages", user.id)
        return False
    return True


async def copy_by_dm(user: Person, public: Reply, everything: Reply) -> Reply:
    """`everything` sent to the user by direct message, and `public` with a note saying whether
    it arrived; the note never depends on what `everything` holds."""
    sent = await direct_message(user, everything.content, everything.embeds)
    note = wording.SENT_BY_DM if sent else wording.NOT_SENT_BY_DM
    return Reply("\n".join(filter(None, (public.content, note))), public.embeds)


async def _deliver_late(
    channel: object,
    user: Person,
    content: str,
    embeds: Sequence[discord.Embed],
    private: bool,
    loading: int | None,
) -> None:
    """A public answer in the channel, a reply to the `loading` message mentioning no one; a
    private one by direct message, with only a fixed note in the channel. Where the bot may not
    post (a slash command works there all the same), the answer goes by direct message and no
    note is tried: Discord would refuse it, and each refusal counts towards its invalid-request
    limit."""
    in_dm = isinstance(channel, discord.DMChannel) or (
        isinstance(channel, discord.PartialMessageable)
        and channel.type is discord.ChannelType.private
    )
    barred = isinstance(channel, discord.abc.GuildChannel | discord.Thread) and not may_reply(
        channel
    )
    by_dm = private or barred
    log.info("interaction token expired; answering %s", "by DM" if by_dm else "in the channel")
    if by_dm:
        if embeds and is_nsfw(channel):  # its images may be age-restricted: never by DM
            await direct_message(user, wording.LATE_AGE_RESTRICTED, ())
            sent = False  # (the answer itself was not)
        else:
            sent = await direct_message(user, content, embeds)
        if in_dm or barred:
            return
        content, embeds = (wording.LATE_BY_DM if sent else wording.LATE_NOT_BY_DM), ()
    if not isinstance(channel, discord.abc.Messageable):
        log.warning("no channel to answer in after the interaction expired")
        return
    content, embeds = _as_text_without_embed_links(channel, content, embeds)
    try:
        await _post_late(channel, content, embeds, loading)
    except (discord.Forbidden, discord.NotFound) as exc:
        log.warning("could not answer in channel %s after the token expired: %s", channel, exc)


async def _post_late(
    channel: discord.abc.Messageable,
    content: str,
    embeds: Sequence[discord.Embed],
    loading: int | None,
) -> None:
    """A reply to the loading message, or a message of its own if Discord refuses the reply."""
    quiet = discord.AllowedMentions.none()
    if loading is not None and isinstance(channel, discord.abc.Snowflake):
        # Posted all the same if a moderator deleted the loading message meanwhile.
        to = discord.MessageReference(
            message_id=loading, channel_id=channel.id, fail_if_not_exists=False
        )
        try:
            await channel.send(
                content or None, embeds=list(embeds), allowed_mentions=quiet, reference=to
            )
            return
        except discord.HTTPException as exc:
            if exc.status != 400:
                raise
            log.info("the late answer could not reply to its loading message: %s", exc)
    await channel.send(content or None, embeds=list(embeds), allowed_mentions=quiet)


def _as_text_without_embed_links(
    channel: object, content: str, embeds: Sequence[discord.Embed]
) -> tuple[str, Sequence[discord.Embed]]:
    """Embeds as lines of text where the bot may not embed: Discord drops a message's embeds
    then, and refuses a message of embeds alone (discord/discord-api-docs#2601). Interaction
    responses are webhooks' messages, which this does not limit."""
    if not embeds or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return content, embeds
    if channel.permissions_for(channel.guild.me).embed_links:
        return content, embeds
    lines = [content] if content else []
    lines += [f"{embed.title}: <{embed.url}>" for embed in embeds]
    return "\n".join([*lines, wording.NO_EMBED_LINKS]), ()
