"""The token never shows: not in logs (ours or discord.py's), errors, replies, or `check`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
from pathlib import Path

import pytest

from bot.chat.client import Glimpse
from bot.log_secrets import hide_tokens
from tests.conftest import TINY_BLIP, TINY_CLIP
from tests.e2e.harness import World, bot_settings, running, shape_png, sync_commands
from tests.fakediscord import FakeDiscord

ROOT = Path(__file__).resolve().parents[2]


def distinctive_token(server: FakeDiscord) -> str:
    return f"{server.application_id}.GlimpseSecret.{secrets.token_urlsafe(24)}"


async def run_cli(args: list[str], token: str, server: FakeDiscord, cwd: Path, **env: str) -> str:
    """`python -m bot ARGS` at DEBUG; returns its stdout and stderr together."""
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": token,
        "DISCORD_API_URL": server.api_url,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "DATA_DIR": str(cwd / f"data-{secrets.token_hex(4)}"),
        "CAPTION_MODEL": str(TINY_BLIP),
        "SEARCH_MODEL": str(TINY_CLIP),
        "LOG_LEVEL": "DEBUG",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    return f"$ python -m bot {' '.join(args)} -> {process.returncode}\n{output.decode()}"


async def test_the_token_never_appears_anywhere(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    hide_tokens()  # as `python -m bot` does when it sets up logging
    token = distinctive_token(server)
    wrong = distinctive_token(server)
    server.token = token  # the fake accepts only this one from now on
    # Run the CLI meanwhile: a token Discord rejects, `check`, and a bad setting beside a token.
    cli = asyncio.gather(
        run_cli(["run"], wrong, server, tmp_path),
        run_cli(["check"], token, server, tmp_path),
        run_cli(["run"], token, server, tmp_path, MAX_IMAGE_BYTES="lots"),
    )

    # A gateway proxy's password, which discord.py logs with the URL it connects to.
    gateway = server.gateway_url.replace("://", "://glimpse:hunter2@", 1)
    async with running(bot_settings(server, tmp_path / "data", DISCORD_GATEWAY_URL=gateway)) as bot:
        assert token not in repr(bot.settings) and token not in str(bot.settings.discord_token)
        interaction_token = await exercise(server, world, bot)

    outputs = await cli
    assert "-> 1" in outputs[0] and "DISCORD_TOKEN" in outputs[0], outputs[0]
    assert "-> 0" in outputs[1] and "check passed" in outputs[1], outputs[1]
    assert "-> 1" in outputs[2] and "MAX_IMAGE_BYTES" in outputs[2], outputs[2]

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [formatter.format(record) for record in caplog.records]
    assert any(r.name.startswith("discord.") for r in caplog.records)  # discord.py's too
    assert any("Traceback" in text for text in logged)  # errors were logged with tracebacks
    printed = capfd.readouterr()
    haystack = {
        "log": "\n".join(logged),
        "sent": json.dumps(server.sent),
        "printed": printed.out + printed.err,
        **{f"cli {i}": output for i, output in enumerate(outputs)},
    }
    for where, text in haystack.items():
        for secret in (token, wrong):
            assert secret not in text, f"the token leaked into {where}"
            assert secret.rsplit(".", 1)[1] not in text, f"part of the token leaked into {where}"
        if where == "log":  # the bot's answers carry it to Discord (sent) by design
            assert interaction_token not in text, "an interaction's token leaked into the log"
            assert "hunter2" not in text, "the gateway proxy's password leaked into the log"


async def exercise(server: FakeDiscord, world: World, bot: Glimpse) -> str:
    """Good commands and bad ones, a failing model call, and slash commands; returns the
    slash command's interaction token."""
    png = ("a.png", shape_png("red", "circle"), "image/png")
    commands = [
        ("!caption", [png]),
        ("!caption", [("doc.pdf", b"%PDF-1.4\n", "application/pdf")]),
        ("!find a red circle", []),
        ("!find a red circle top: 99", []),
        ("!forget <@12345>", []),
        ("!index", []),
        ("!caption", [png]),  # the model fails on this one
    ]
    captioner = await bot.vision.captioner()
    real = captioner.join
    failing = len(commands) - 1

    def join(batch, requests):  # type: ignore[no-untyped-def]
        if len(server.sent) == failing:
            raise RuntimeError("the model broke")
        return real(batch, requests)

    captioner.join = join  # type: ignore[method-assign]
    await server.post_message(world.general, world.bob, "!nosuchcommand")
    for content, attachments in commands:
        await server.post_message(world.general, world.bob, content, attachments=attachments)
        await server.wait_for_sent(channel_id=world.general)
    assert server.sent[-1]["content"].startswith("Something went wrong")
    await sync_commands(server)
    interaction = await server.slash_command(world.general, world.bob, "find", {"query": "x"})
    await interaction.wait_for_response()
    return interaction.token
