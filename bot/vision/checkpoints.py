"""Finding and loading checkpoints: a hub id or a local folder in, a model out, or one line
naming the setting, the reason and the fix.

Where a checkpoint comes from is settled before transformers sees it: without this, a missing
hub made transformers retry every file of the checkpoint with back-off (minutes of warnings)
before failing with a message that mentions neither the cache nor HF_HUB_OFFLINE.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import (
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The model families people know, by the `model_type` in a checkpoint's config.json.
FAMILIES = {"blip": "BLIP", "clip": "CLIP", "siglip": "SigLIP"}
DOWNLOAD_FIX = (
    "where there is internet, run `python -m bot download-models` and copy its cache (HF_HOME) here"
)


class ModelLoadError(Exception):
    """A checkpoint could not be loaded; the message names the setting that chose it."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint found: `source` is what transformers loads (a folder or a hub id)."""

    setting: str
    model_id: str
    source: str
    local_files_only: bool
    model_type: str = ""  # its config.json's, once checked


def looks_like_path(model_id: str) -> bool:
    """A hub id is `name` or `org/name`; anything else that looks like a path is one."""
    return model_id.startswith((".", "/", "~")) or model_id.count("/") > 1 or "\\" in model_id


def locate(model_id: str, setting: str, *families: str) -> Checkpoint:
    """The checkpoint a setting names, found and of one of `families` (`blip`, `clip`,
    `siglip`), before any weights are read: a folder that exists, or a hub id in the cache or
    on a reachable hub. Its `model_type` says which family it is."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        checkpoint = Checkpoint(setting, model_id, str(path), local_files_only=True)
    elif path.exists():
        raise ModelLoadError(f"{setting}: {model_id!r} is a file; it must be a checkpoint folder")
    elif looks_like_path(model_id):
        raise ModelLoadError(f"{setting}: the folder {model_id!r} does not exist")
    else:
        checkpoint = _on_hub(model_id, setting)
    return dataclasses.replace(checkpoint, model_type=_check_family(checkpoint, families))


def from_pretrained(cls: type[T], checkpoint: Checkpoint, **kwargs: Any) -> T:
    """Loads a located checkpoint exactly as transformers does, but fails in one line."""
    try:
        return cls.from_pretrained(  # type: ignore[attr-defined, no-any-return]
            checkpoint.source, local_files_only=checkpoint.local_files_only, **kwargs
        )
    # transformers, the hub client and safetensors each raise their own types for a broken
    # or incomplete checkpoint; whichever it is, the admin gets one line naming the setting.
    except Exception as exc:
        log.debug("loading %s=%s failed", checkpoint.setting, checkpoint.model_id, exc_info=True)
        raise ModelLoadError(
            f"{checkpoint.setting}: cannot load {checkpoint.model_id!r}: {first_line(exc)} "
            "(LOG_LEVEL=DEBUG shows the details)"
        ) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def hub_unreachable(model_id: str, setting: str) -> str | None:
    """Why the hub cannot serve `model_id` now (no network), or None when it can: one request
    for its config.json, no retries, at most HF_HUB_ETAG_TIMEOUT seconds (10 by default).
    Raises ModelLoadError when the hub answers that it has no such model."""
    endpoint = constants.ENDPOINT
    when, why = _UNREACHABLE.get(endpoint, (0.0, ""))
    if time.monotonic() - when < UNREACHABLE_KEPT_S:
        return why
    try:
        get_hf_file_metadata(hf_hub_url(model_id, "config.json"), retry_on_errors=False)
    except GatedRepoError:
        raise ModelLoadError(
            f"{setting}: {model_id!r} is gated on the Hugging Face hub: accept its terms on "
            "huggingface.co, then put an access token in .env as HF_TOKEN=... (or log in here "
            "with `hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"{setting}: the Hugging Face hub has no model {model_id!r} (if it is private, "
            "put an access token in .env as HF_TOKEN=..., or log in with `hf auth login`)"
        ) from None
    except HfHubHTTPError:
        return None  # it answered; loading will say what is wrong, in the hub's own words
    except Exception as exc:
        log.debug("the hub did not answer for %s", model_id, exc_info=True)
        if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
            why = f"no answer within {constants.HF_HUB_ETAG_TIMEOUT} s"
        else:
            why = first_line(exc)
        why = f"no network: cannot reach the Hugging Face hub at {endpoint} ({why})"
        _UNREACHABLE[endpoint] = (time.monotonic(), why)
        return why
    return None


# The last "unreachable" answer per hub address, reused for a moment: the second model would
# otherwise wait out the same timeout again (10 s each where a firewall drops the packets).
_UNREACHABLE: dict[str, tuple[float, str]] = {}
UNREACHABLE_KEPT_S = 60.0


def _on_hub(model_id: str, setting: str) -> Checkpoint:
    try:
        cached = isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except ValueError:  # not a valid hub id either
        raise ModelLoadError(f"{setting}: {model_id!r} is neither a folder nor a hub id") from None
    cache = constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise ModelLoadError(
                f"{setting}: cannot load {model_id!r}: it is not in the model cache ({cache}) "
                f"and HF_HUB_OFFLINE=1 forbids downloading it. Fix: {DOWNLOAD_FIX}; or unset "
                f"HF_HUB_OFFLINE where the hub is reachable; or set {setting} to a local folder"
            )
        return Checkpoint(setting, model_id, model_id, local_files_only=True)
    unreachable = hub_unreachable(model_id, setting)
    if unreachable is None:
        return Checkpoint(setting, model_id, model_id, local_files_only=False)
    if not cached:
        raise ModelLoadError(
            f"{setting}: cannot load {model_id!r}: {unreachable}, and it is not in the model "
            f"cache ({cache}). Fix: {DOWNLOAD_FIX}, then set HF_HUB_OFFLINE=1; or set {setting} "
            "to a local folder"
        )
    log.warning(
        "%s: %s; using the cached copy of %r (set HF_HUB_OFFLINE=1 to skip this check)",
        setting,
        unreachable,
        model_id,
    )
    return Checkpoint(setting, model_id, model_id, local_files_only=True)


def _check_family(checkpoint: Checkpoint, families: tuple[str, ...]) -> str:
    """A CLIP folder given as CAPTION_MODEL (or the reverse) fails here, in one line, instead
    of deep inside transformers. Returns the checkpoint's family."""
    wanted = " or ".join(FAMILIES[family] for family in families)
    setting, model_id = checkpoint.setting, checkpoint.model_id
    try:
        model_type = json.loads(Path(_config_file(checkpoint)).read_text()).get("model_type")
    except Exception as exc:
        log.debug("reading %s's config.json failed", model_id, exc_info=True)
        if isinstance(exc, FileNotFoundError | EntryNotFoundError):
            why = f"it has no config.json, so it is not a {wanted} checkpoint"
        else:
            why = f"its config.json cannot be read: {first_line(exc)}"
        raise ModelLoadError(f"{setting}: cannot load {model_id!r}: {why}") from None
    if model_type not in families:
        found = f"a {FAMILIES.get(model_type, repr(model_type))} checkpoint"
        if not model_type:
            found = "a checkpoint whose config.json names no model_type"
        raise ModelLoadError(
            f"{setting}: {model_id!r} is {found}, not a {wanted} one. "
            f"Fix: set {setting} to a {wanted} checkpoint"
        )
    return str(model_type)


def _config_file(checkpoint: Checkpoint) -> str:
    if Path(checkpoint.source).is_dir():
        return str(Path(checkpoint.source) / "config.json")
    return hf_hub_download(
        checkpoint.source, "config.json", local_files_only=checkpoint.local_files_only
    )
