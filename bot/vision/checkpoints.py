"""`from_pretrained` with failures turned into one clear line naming the setting."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModelLoadError(Exception):
    """A checkpoint could not be loaded; the message names the setting that chose it."""


def looks_like_path(model_id: str) -> bool:
    """A hub id is `name` or `org/name`; anything else that looks like a path is one."""
    return model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or "\\" in model_id


def from_pretrained(cls: type[T], model_id: str, setting: str, **kwargs: Any) -> T:
    """Loads a hub id or a local folder exactly as transformers does, but fails readably."""
    path = Path(model_id).expanduser()
    if looks_like_path(model_id) and not path.exists():
        raise ModelLoadError(f"{setting}: the folder {model_id!r} does not exist")
    source = str(path) if path.exists() else model_id
    try:
        return cls.from_pretrained(source, **kwargs)  # type: ignore[attr-defined, no-any-return]
    except (OSError, ValueError) as exc:
        log.debug("loading %s=%s failed", setting, model_id, exc_info=True)
        raise ModelLoadError(f"{setting}: cannot load {model_id!r}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first if len(first) <= 300 else first[:297] + "..."
