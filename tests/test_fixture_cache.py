"""The large-fixture cache: made once, replaced when its key changes, never seen half-made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixture_cache import cache_root, cached_folder, source_key


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GLIMPSE_TEST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def writer(log: list[str], text: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        log.append(text)
        (folder / "weights").write_text(text)

    return build


def test_the_folder_is_made_once_and_reused(cache: Path) -> None:
    log: list[str] = []
    first = cached_folder("models", "k1", writer(log, "one"))
    second = cached_folder("models", "k1", writer(log, "two"))
    assert first == second == cache / "models-k1"
    assert log == ["one"] and (first / "weights").read_text() == "one"
    assert [p.name for p in cache.iterdir()] == ["models-k1"]  # no partial folder left


def test_a_new_key_replaces_the_old_folder_of_that_name_only(cache: Path) -> None:
    cached_folder("models", "k1", writer([], "old"))
    cached_folder("index", "k1", writer([], "other"))
    new = cached_folder("models", "k2", writer([], "new"))
    assert (new / "weights").read_text() == "new"
    assert sorted(p.name for p in cache.iterdir()) == ["index-k1", "models-k2"]


def test_a_failed_build_leaves_nothing(cache: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cached_folder("models", "k1", broken)
    assert list(cache.iterdir()) == []
    log: list[str] = []
    assert (cached_folder("models", "k1", writer(log, "again")) / "weights").exists()
    assert log == ["again"]


def test_a_run_that_loses_the_race_uses_the_winners_folder(cache: Path) -> None:
    """Another run finishes the same folder while this one is still building it."""

    def slow(folder: Path) -> None:
        (folder / "weights").write_text("loser")
        cached_folder("models", "k1", writer([], "winner"))

    folder = cached_folder("models", "k1", slow)
    assert (folder / "weights").read_text() == "winner"
    assert [p.name for p in cache.iterdir()] == ["models-k1"]


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLIMPSE_TEST_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert cache_root() == Path("/somewhere/cache/glimpse-tests")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert cache_root() == Path("/home/someone/.cache/glimpse-tests")
    monkeypatch.setenv("GLIMPSE_TEST_CACHE", "/big/disk/glimpse")
    assert cache_root() == Path("/big/disk/glimpse")


def test_the_key_changes_with_the_code_and_the_extra(tmp_path: Path) -> None:
    maker = tmp_path / "maker.py"
    maker.write_text("SIZE = 1\n")
    key = source_key(maker, extra="5.0")
    assert source_key(maker, extra="5.0") == key and len(key) == 12
    assert source_key(maker, extra="5.1") != key
    maker.write_text("SIZE = 2\n")
    assert source_key(maker, extra="5.0") != key
