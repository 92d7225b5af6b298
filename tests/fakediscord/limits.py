"""Discord's limits on the messages a bot sends, refused as Discord refuses them.

A body over a limit gets 400 with code 50035 (Invalid Form Body) and the offending field named
in ``errors`` (opcodes-and-status-codes.mdx, JSON error codes; the nesting is the spec's
``ErrorDetails``). The limits are message.mdx's: content up to 2000 characters ("Create
Message"), up to 10 embeds, and "Embed Limits" (title 256, description 4096, up to 25 fields,
field name 256 and value 1024, footer text 2048, author name 256, 6000 in all, measured without
leading and trailing whitespace); an attachment's description (alt text) up to 1024; images in
embeds only from http(s) or ``attachment://`` URLs ("Embed Image Structure"). An empty message
is 50006.
"""

from __future__ import annotations

from typing import Any

from .payloads import ApiError, form_error

CONTENT_MAX = 2000
EMBEDS_MAX = 10
FILES_MAX = 10
_EMBED_TEXT = {"title": 256, "description": 4096}
_TOTAL_MAX = 6000


def _too_long(field: str, limit: int) -> ApiError:
    return form_error(field, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _text(value: Any) -> str:
    return str(value or "").strip()


def _embed_size(i: int, embed: dict) -> int:
    """Characters of one embed towards the 6000; raises for a field over its own limit."""
    total = 0
    for key, limit in _EMBED_TEXT.items():
        total += _checked(f"embeds.{i}.{key}", embed.get(key), limit)
    fields = embed.get("fields") or []
    if len(fields) > 25:
        raise _too_long(f"embeds.{i}.fields", 25)
    for j, field in enumerate(fields):
        for key, limit in (("name", 256), ("value", 1024)):
            value = _text(field.get(key))
            if not value or len(value) > limit:
                raise form_error(
                    f"embeds.{i}.fields.{j}.{key}",
                    "BASE_TYPE_BAD_LENGTH",
                    f"Must be between 1 and {limit} in length.",
                )
            total += len(value)
    total += _checked(f"embeds.{i}.footer.text", (embed.get("footer") or {}).get("text"), 2048)
    total += _checked(f"embeds.{i}.author.name", (embed.get("author") or {}).get("name"), 256)
    for key in ("image", "thumbnail"):
        url = str((embed.get(key) or {}).get("url") or "")
        if key in embed and not url.startswith(("http://", "https://", "attachment://")):
            raise form_error(
                f"embeds.{i}.{key}.url",
                "URL_TYPE_INVALID_SCHEME",
                "Scheme must be one of ('http', 'https', 'attachment').",
            )
    return total


def _checked(field: str, value: Any, limit: int) -> int:
    text = _text(value)
    if len(text) > limit:
        raise _too_long(field, limit)
    return len(text)


def validate_message_body(body: dict, n_files: int, *, editing: bool = False) -> None:
    """Raise ApiError for a create/edit body that real Discord refuses."""
    content = body.get("content") or ""
    embeds = body.get("embeds") or []
    if len(content) > CONTENT_MAX:
        raise _too_long("content", CONTENT_MAX)
    if len(embeds) > EMBEDS_MAX:
        raise _too_long("embeds", EMBEDS_MAX)
    total = sum(_embed_size(i, embed) for i, embed in enumerate(embeds))
    if total > _TOTAL_MAX:
        raise form_error(
            "embeds", "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {_TOTAL_MAX}"
        )
    if n_files > FILES_MAX:
        raise _too_long("files", FILES_MAX)
    for i, att in enumerate(body.get("attachments") or []):
        _checked(f"attachments.{i}.description", att.get("description"), 1024)
    empty = not (
        content
        or embeds
        or n_files
        or body.get("sticker_ids")
        or body.get("poll")
        or body.get("components")
        or body.get("attachments")
        or (body.get("message_reference") or {}).get("type") == 1
    )
    if empty and not editing:
        raise ApiError(400, 50006, "Cannot send an empty message")
