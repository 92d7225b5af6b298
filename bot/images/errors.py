"""ImageError: an image that cannot be used, with the reason in words a user can read."""

from __future__ import annotations

import struct

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
