"""Every sentence a user reads: replies, refusals, errors and notes, in one file.

Kept together so that a reviewer or a translator reads them all in one place. Command help texts
and slash-option descriptions stay beside their commands, where discord.py wants them.
"""

from __future__ import annotations

import math

# The sentences of finding images (!find, its results, reposts) live in bot.wording_find, those
# of automatic alt text in bot.wording_alt_text, and those of members' own images (forget,
# optout, optin) in bot.wording_members.
from bot.wording_alt_text import *  # noqa: F403
from bot.wording_find import *  # noqa: F403
from bot.wording_members import *  # noqa: F403

# -- images that cannot be used (the CLI prints these too, or the `_file` variant) ----------------

EMPTY_FILE = "the file is empty"
IMAGE_BOMB = "the image is too large to open safely"
IMAGE_TRUNCATED = "the image is cut off; try uploading it again"


def too_many_scans(limit: int) -> str:
    return f"the JPEG is split into more than {limit} scans, too many to decode safely"


def metadata_flood(limit: int) -> str:
    return (
        f"the file is cut into more than {limit:,} blocks (of metadata, frames or picture "
        "data), too many to read safely"
    )


def slow_bmp(max_pixels: int, max_bytes: int) -> str:
    return (
        f"the BMP is run-length compressed and larger than {max_pixels:,} pixels or "
        f"{max_bytes // (1024 * 1024)} MB, too slow to decode safely"
    )


FILE_TRUNCATED = "the image is cut off: the file is incomplete"
IMAGE_CORRUPT = "the image is damaged and cannot be read"
IMAGE_NO_SIZE = "the image is damaged and cannot be read (it has no size)"
NOT_AN_IMAGE = "this is not an image, or not a kind we can read"


# What a file that is not an image looks like, by the kind its first bytes show.
FILE_KINDS = {
    "pdf": "a PDF document",
    "zip": "a ZIP archive or Office document",
    "linux": "a Linux program",
    "windows": "a Windows program",
    "macos": "a macOS program",
    "macos_java": "a macOS or Java program",
    "gzip": "a gzip archive",
    "rar": "a RAR archive",
    "7z": "a 7-Zip archive",
    "video": "a video",
    "audio": "an audio file",
    "ogg": "an audio or video file",
    "html": "a web page",
    "xml": "an XML document",
    "text": "a text file",
}


NO_IMAGES_FOUND = "no images found"


def unreadable_file(reason: str) -> str:
    return f"cannot read the file: {reason}"


def file_size(size: float, unit: str) -> str:
    """`size` in `unit` ("MB" or "KB", binary), to a tenth."""
    return f"{size:.1f} {unit}"


def byte_count(size: int) -> str:
    return f"{size:,} bytes"


def file_too_large(size: str, limit: str) -> str:
    return f"the file is {size}; the limit is {limit}"


def file_larger_than(limit: str) -> str:
    return f"the file is larger than the {limit} limit"


def not_an_image(looks_like: str) -> str:
    return f"this is not an image (looks like {looks_like})"


def svg_refused(allowed: str) -> str:
    return f"SVG drawings cannot be read here; please send a {allowed} image"


def svg_file(allowed: str) -> str:
    return f"SVG drawings cannot be read; convert it to a {allowed} image"


def format_refused(name: str, allowed: str) -> str:
    return f"{name} images are not supported; please send a {allowed} image"


def format_file(name: str, allowed: str) -> str:
    return f"{name} images are not supported; convert it to a {allowed} image"


def colour_mode_refused(mode: str) -> str:
    return f"this image's colour format ({mode}) is not supported"


def _pixel_counts(pixels: int, limit: int) -> tuple[str, str]:
    """Both in megapixels to a tenth; in pixels where that would read "50.0 megapixels; the
    limit is 50.0 megapixels", or a limit under a tenth of a megapixel as 0.0."""
    got, most = f"{pixels / 1e6:.1f} megapixels", f"{limit / 1e6:.1f} megapixels"
    if got == most or limit < 100_000:
        got, most = f"{pixels:,} pixels", f"{limit:,} pixels"
    return got, most


def too_many_pixels(width: int, height: int, pixels: int, limit: int) -> str:
    got, most = _pixel_counts(pixels, limit)
    return f"the image is {width} × {height} pixels ({got}); the limit is {most}"


def too_large_to_open(width: int | None, height: int | None, pixels: int, limit: int) -> str:
    """Pillow refuses to open it at all; the dimensions when its header gave them."""
    got, most = _pixel_counts(pixels, limit)
    size = f"{width} × {height} pixels ({got})" if width and height else got
    return f"the image is {size}, too large to open safely; the limit is {most}"


def too_thin(width: int, height: int, ratio: float, limit: float) -> str:
    shown = f"{ratio:.0f}"
    if float(shown) <= limit:  # "(20:1); the limit is 20:1" for 2041 x 100
        shown = f"{ratio:.2f}".rstrip("0").rstrip(".")
    return (
        f"the image is {width} × {height} pixels, too long and thin "
        f"({shown}:1); the limit is {limit:g}:1"
    )


# -- images that could not be fetched ------------------------------------------------------------

LINK_NOT_WEB = "that image link is not a web address"
HOST_NOT_DISCORD = "that image is not hosted by Discord, so it was not fetched"
IMAGE_GONE = "the image is gone (deleted, or its link expired)"
FETCH_TIMED_OUT = "fetching the image timed out"
FETCH_FAILED = "the image could not be fetched from Discord"


def fetch_refused(status: int) -> str:
    return f"Discord did not send the image (HTTP {status})"


# -- replies to commands --------------------------------------------------------------------------


def no_image(lookback: int) -> str:
    return (
        "I found no image to caption: attach one, reply to a message with one, "
        f"or post one in the last {lookback} messages of this channel."
    )


NO_HISTORY_TO_CAPTION = (
    "You can't read this channel's earlier messages, so I won't caption its latest image: "
    "attach one, or reply to a message with one."
)
HISTORY_NOT_SHARED_TO_CAPTION = (
    "Not everyone who sees this channel can read its earlier messages, so I won't caption its "
    "latest image here: attach one, or reply to a message with one."
)
BOT_CANNOT_READ_TO_CAPTION = (
    "I can't read this channel's earlier messages, so I can't find its latest image: "
    "attach the image instead."
)
NO_IMAGE_IN_MESSAGE = "That message has no image or file to caption."
BOT_CANNOT_READ_THREAD_START = (
    "I can't read the channel this thread was started in, so I can't see the message it was "
    "started from: a server admin can give me Read Message History there."
)
NO_PREVIEW = (
    "Discord shows no image preview for that link, so I have nothing to caption: "
    "attach the image itself instead."
)


def caption_refused(filename: str, reason: object) -> str:
    return f"can't use {filename}: {reason}"


def numbered(position: int, total: int, line: str) -> str:
    return f"{position}. {line}" if total > 1 else line


def images_skipped(skipped: int, most: int) -> str:
    plural = "s" if skipped > 1 else ""
    return f"({skipped} more image{plural} skipped: at most {most} at a time.)"


def latest_image_note(jump_url: str) -> str:
    return f"\n-# captioned the latest image: {jump_url}"


def menu_source_note(jump_url: str) -> str:
    return f"\n-# {jump_url}"


def alt_text_line(alt_text: str) -> str:
    """Under a caption: what the image's poster wrote for it, when it differs."""
    return f"-# alt text: {alt_text}"


BACKFILL_STARTED = "Reading this channel's history…"


def backfill_progress(seen: int, queued: int) -> str:
    return f"Read {seen} messages, {queued} new images queued…"


def backfill_read(seen: int, queued: int) -> str:
    return f"Read {seen} messages; indexing {queued} new images…"


def backfill_done(added: int, seen: int) -> str:
    return f"Done: added {added} image{_s(added)} from {seen} messages."


def synced(count: int, everywhere: bool, names: list[str]) -> str:
    scope = "every server" if everywhere else "this server"
    return f"Synced {count} commands to {scope}: {', '.join(names)}."


SYNC_USAGE = (
    "say `sync` (publish the slash commands to every server), `sync here` (to this server only, "
    "at once) or `sync clear` (remove this server's copies)"
)
SYNC_CLEARED = (
    "Removed the slash commands synced to this server only; those synced to every server stay."
)

SYNC_HELD = (
    "Discord is holding back command updates for now (it allows 200 new commands a day); "
    "try again later."
)


def sync_needs_server(form: str) -> str:
    return f"`sync {form}` works only in a server; `sync` publishes the commands to every server."


# -- errors ---------------------------------------------------------------------------------------


def slow_down(retry_after: float) -> str:
    return f"Slow down a little: try again in {max(1, math.ceil(retry_after))} s."


BUSY = "I'm busy with other requests right now; try again in a moment."
OUT_OF_MEMORY = (
    "I can't do that right now: the model ran out of memory. "
    "Try again in a moment, or with fewer images."
)
OUR_BUG = "Something went wrong on my side; the admins can find the details in the log."
DISCORD_TROUBLE = "Discord is having trouble answering me right now; please try again in a minute."
OWNERS_ONLY = "Only the bot's owners can do that."
SERVERS_ONLY = "That works only in a server, not in DMs."
NOT_HERE = "You can't use that command here."


def image_refused(reason: str) -> str:
    return f"I can't use that image: {reason}."


def image_not_fetched(reason: object) -> str:
    return f"I couldn't get that image: {reason}."


def search_unreadable(reason: object) -> str:
    return f"I couldn't read that search: {reason}."


def permission_needed(permissions: list[str]) -> str:
    needed = ", ".join(p.replace("_", " ").title() for p in permissions)
    return f"You need the {needed} permission for that."


def _s(count: int) -> str:
    return "s" if count != 1 else ""


# -- answers delivered late in the channel, or by direct message ----------------------------------
LATE_BY_DM = "-# An answer took too long to show here, so it went by direct message."
LATE_NOT_BY_DM = "-# An answer took too long to show here, and couldn't be sent by direct message."
