"""CI runs the README's test command word for word."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    after_heading = readme.split("**Run the tests**", 1)[1]
    command = after_heading.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "python -m pytest" in command
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
