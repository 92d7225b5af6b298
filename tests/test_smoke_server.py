"""`scripts/fake_discord_server.py`, which docker-smoke.sh runs inside the bot's own image:
that image holds the product's dependencies only, so the server must start without the test
ones (trustme makes the media hosts' certificates)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# As in the image: an import of trustme fails.
WITHOUT_TRUSTME = (
    "import runpy, sys; sys.modules['trustme'] = None; "
    "runpy.run_path('scripts/fake_discord_server.py', run_name='__main__')"
)


def test_the_smoke_server_starts_and_stops_without_test_dependencies() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_TRUSTME],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.startswith("{"), child.communicate(timeout=30)[1]
        server = json.loads(line)
        assert server["api_url"].startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            server["api_url"] + "/gateway/bot", headers={"Authorization": f"Bot {server['token']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["url"] == server["gateway_url"]
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.communicate()
