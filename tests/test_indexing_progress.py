"""The periodic summary of background indexing: counts, by reason, only when something happened."""

from __future__ import annotations

import logging

import pytest

from bot.index import progress
from bot.index.progress import Progress


def summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.index.progress"]


def test_a_line_when_due_with_counts_by_reason_then_the_counts_start_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="bot.index.progress")
    monkeypatch.setattr(progress, "SUMMARY_EVERY_S", 0.0)
    counts = Progress()
    counts.indexed += 7
    counts.dropped_for("corrupt")
    counts.dropped_for("gone", 2)
    counts.log_summary(pending=3)
    assert summaries(caplog) == [
        "indexing: 7 image(s) indexed, 3 pending, 3 dropped (1 corrupt, 2 gone)"
    ]
    counts.log_summary(pending=0)  # nothing happened since: no line
    assert len(summaries(caplog)) == 1


def test_no_line_before_it_is_due_unless_forced_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.index.progress")
    counts = Progress()
    counts.indexed += 1
    counts.log_summary(pending=0)
    assert summaries(caplog) == []
    counts.log_summary(pending=0, force=True)
    assert summaries(caplog) == ["indexing: 1 image(s) indexed, 0 pending, 0 dropped"]
