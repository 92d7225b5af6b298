"""ImageError: an image that cannot be used, with the reason in words a user can read."""

from __future__ import annotations

import struct

from bot import wording

_MB = 1024 * 1024

# Pillow's decoders raise all of these on hostile input; each means "this file is unusable".
# The AVIF plugin raises RuntimeError, even from open(), where Pillow does not catch it.
_PARSE_ERRORS = (struct.error, EOFError, IndexError, KeyError)
DECODE_ERRORS = (OSError, SyntaxError, ValueError, RuntimeError, *_PARSE_ERRORS)


class ImageError(ValueError):
    """An unusable input: `reason` in words for a Discord user, `file_reason` for a file's owner."""

    def __init__(self, code: str, reason: str, file_reason: str | None = None) -> None:
        super().__init__(code, reason, file_reason)  # all in args: it survives pickling
        self.code = code
        self.reason = reason
        self.file_reason = file_reason or reason

    def __str__(self) -> str:
        return self.reason


def too_large(size: int | None, max_bytes: int) -> ImageError:
    """The refusal for a file over MAX_IMAGE_BYTES; `size` None when only "more" is known."""
    # In the limit's unit, both: KB where a tenth of a MB or less would read as "0.0 MB".
    scale, unit = (_MB, "MB") if max_bytes >= _MB / 10 else (1024, "KB")
    limit = wording.file_size(max_bytes / scale, unit)
    if size is None:
        return ImageError("too_large", wording.file_larger_than(limit))
    got = wording.file_size(size / scale, unit)
    if got == limit:  # "1.0 MB; the limit is 1.0 MB" would read as a bug
        got, limit = wording.byte_count(size), wording.byte_count(max_bytes)
    return ImageError("too_large", wording.file_too_large(got, limit))


def not_an_image(kind: str) -> ImageError:
    """`kind`: a key of wording.FILE_KINDS."""
    return ImageError("not_image", wording.not_an_image(wording.FILE_KINDS[kind]))
