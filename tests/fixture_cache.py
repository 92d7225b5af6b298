"""The cache of large test fixtures: made once, reused by later runs and by parallel runs.

One folder, `$GLIMPSE_TEST_CACHE`, else `$XDG_CACHE_HOME/glimpse-tests`, else
`~/.cache/glimpse-tests` (README, "Checks"). Deleting it is always safe: what a test needs is
made again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# A build interrupted by a crash leaves its partial folder; one this old is nobody's build.
_ABANDONED_AFTER_S = 3600


def cache_root() -> Path:
    configured = os.environ.get("GLIMPSE_TEST_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glimpse-tests"


def source_key(*files: Path, extra: str = "") -> str:
    """A short key that changes when any of these files (or `extra`) changes."""
    digest = hashlib.sha256(extra.encode())
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def cached_folder(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """The folder `name-key` in the cache, filled by `build(folder)` the first time.

    `build` writes into a private partial folder that is renamed into place only when complete,
    so a crash leaves nothing that looks finished and two runs at once never see each other's
    half-written files (the slower one keeps the winner's folder and drops its own). Building
    a new key removes the folders of the same name made under older keys.
    """
    root = cache_root()
    final = root / f"{name}-{key}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, name, key)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-partial-", dir=root))
    try:
        build(partial)
        try:
            partial.rename(final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _remove_stale(root: Path, name: str, key: str) -> None:
    for old in root.glob(f"{name}-" + "?" * len(key)):  # same name, any key of that length
        if old.name != f"{name}-{key}":
            shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob(f".{name}-partial-*"):
        try:
            abandoned = time.time() - partial.stat().st_mtime > _ABANDONED_AFTER_S
        except FileNotFoundError:  # its build just finished or gave up
            continue
        if abandoned:
            shutil.rmtree(partial, ignore_errors=True)
