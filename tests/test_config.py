"""Settings: defaults, validation naming the variable, `.env` files, the token kept secret."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from bot.config import (
    PILLOW_MAX_PIXELS,
    ConfigError,
    Cooldown,
    Settings,
    load_settings,
    parse_settings,
)
from bot.vision.checkpoints import ModelLoadError
from bot.vision.devices import loading_onto, resolve_device, resolve_dtype


def test_defaults() -> None:
    settings = parse_settings({})
    assert settings == Settings()
    assert settings.caption_model == "Salesforce/blip-image-captioning-base"
    assert settings.search_model == "openai/clip-vit-base-patch32"
    assert settings.discord_token is None
    assert settings.cooldown == Cooldown(5, 60.0)
    assert settings.max_image_bytes == 26_214_400 and settings.max_image_pixels == 50_000_000
    assert settings.discord_connect_timeout_s == 60.0 and settings.repost_min_score == 0.95
    assert settings.alt_text_max_pending == 20


def test_values_are_typed() -> None:
    settings = parse_settings(
        {
            "COMMAND_PREFIX": "?",
            "DEVICE": "CUDA:1",
            "DTYPE": "bfloat16",
            "MAX_ASPECT_RATIO": "8.5",
            "PRELOAD_MODELS": "false",
            "LOG_LEVEL": "debug",
            "IGNORE_CHANNELS": "1, 22,333",
            "COOLDOWN": "0",
            "DISCORD_API_URL": "http://127.0.0.1:9/api/v10/",
            "DISCORD_CONNECT_TIMEOUT_S": "2.5",
            "REPOST_MIN_SCORE": "0.9",
            "ALT_TEXT_MAX_PENDING": "3",
        }
    )
    assert settings.command_prefix == "?" and settings.device == "cuda:1"
    assert settings.dtype == "bfloat16" and settings.max_aspect_ratio == 8.5
    assert settings.preload_models is False and settings.log_level == "DEBUG"
    assert settings.ignore_channels == frozenset({1, 22, 333})
    assert settings.cooldown is None
    assert settings.discord_api_url == "http://127.0.0.1:9/api/v10"
    assert settings.discord_connect_timeout_s == 2.5 and settings.repost_min_score == 0.9
    assert settings.alt_text_max_pending == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEVICE", "gpu"),
        ("DTYPE", "int4"),
        ("MAX_IMAGE_BYTES", "ten"),
        ("MAX_IMAGE_PIXELS", "-5"),
        ("MAX_IMAGE_PIXELS", "150000000"),  # above Pillow's own limit: it would refuse anyway
        ("MAX_ASPECT_RATIO", "0.5"),
        ("CAPTION_MAX_TOKENS", "0"),
        ("PRELOAD_MODELS", "maybe"),
        ("LOG_LEVEL", "LOUD"),
        ("COMMAND_PREFIX", "hey bot"),
        ("DISCORD_API_URL", "discord.com"),
        ("DISCORD_GATEWAY_URL", "http://x"),
        ("DISCORD_CONNECT_TIMEOUT_S", "0"),
        ("DISCORD_CONNECT_TIMEOUT_S", "soon"),
        ("IGNORE_CHANNELS", "general"),
        ("COOLDOWN", "5 per minute"),
        ("WEAK_MATCH_BELOW", "2"),
        ("REPOST_MIN_SCORE", "0.2"),
        ("REPOST_MIN_SCORE", "1.01"),
        ("ALT_TEXT_MAX_PENDING", "0"),
        ("ALT_TEXT_MAX_PENDING", "many"),
        ("BATCH_MAX", "0"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({name: value})
    assert str(caught.value).startswith(f"{name}: ")
    assert caught.value.name == name


# Every numeric setting, from its declared type (COOLDOWN's is Cooldown: COMMANDS/SECONDS).
NUMERIC = [
    field.name.upper()
    for field in dataclasses.fields(Settings)
    if re.search(r"\b(int|float|Cooldown)\b", str(field.type))
]


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("number", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"])
def test_a_number_that_is_not_finite_is_refused(name: str, number: str) -> None:
    """A COOLDOWN of 5/nan or 5/inf once passed, and the first member to spend the budget got
    no reply but a traceback (the wait before the next command cannot be rounded)."""
    value = f"5/{number}" if name == "COOLDOWN" else number
    with pytest.raises(ConfigError) as caught:
        parse_settings({name: value})
    assert str(caught.value).startswith(f"{name}: ") and str(caught.value).endswith(
        f"(got {value!r})"
    )


def test_cooldown_refuses_a_period_that_is_not_finite_in_its_own_words() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"COOLDOWN": "5/nan"})
    assert str(caught.value) == (
        "COOLDOWN: must be COMMANDS/SECONDS like 5/60, or 0 for off (got '5/nan')"
    )
    assert "COOLDOWN" in NUMERIC and "WEAK_MATCH_BELOW" in NUMERIC and "BATCH_MAX" in NUMERIC


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("COMMAND_PREFIX=?\nCAPTION_MAX_TOKENS=12\n# a comment\n")
    settings = load_settings({"CAPTION_MAX_TOKENS": "20"}, env_file)
    assert settings.command_prefix == "?" and settings.caption_max_tokens == 20


def test_an_env_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    """Saved by an editor in a Windows code page, or by PowerShell 5 as UTF-16."""
    env_file = tmp_path / ".env"
    env_file.write_bytes("COMMAND_PREFIX=\u00a7\n".encode("cp1252"))
    with pytest.raises(ConfigError) as refused:
        load_settings({}, env_file)
    assert str(refused.value) == (
        f"{env_file}: cannot read it: it is not UTF-8 text (save it as UTF-8)"
    )
    env_file.write_text("COMMAND_PREFIX=?\n", encoding="utf-16")
    with pytest.raises(ConfigError):
        load_settings({}, env_file)


def test_data_dir_reads_a_tilde_as_the_home_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/admin")
    assert parse_settings({"DATA_DIR": "~/glimpse"}).data_dir == Path("/home/admin/glimpse")

    def homeless(self: Path) -> Path:  # no HOME, and a user id with no passwd entry
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "expanduser", homeless)
    with pytest.raises(ConfigError) as refused:
        parse_settings({"DATA_DIR": "~/glimpse"})
    assert str(refused.value) == (
        "DATA_DIR: cannot tell the home folder that ~ stands for (got '~/glimpse')"
    )


def test_token_never_shows_itself() -> None:
    token = "MTIzNDU2Nzg5.abcdef.very-secret-token-value"
    settings = parse_settings({"DISCORD_TOKEN": token})
    assert settings.discord_token is not None and settings.discord_token.get() == token
    assert token not in repr(settings) and token not in str(settings)


def test_device_and_dtype_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu
    assert resolve_dtype("float16", cpu) == torch.float16
    assert resolve_dtype("float32", cpu) == torch.float32
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(ConfigError, match=r"^DEVICE: "):
            resolve_device("cuda:0")
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16


def test_a_gpu_that_fails_as_a_model_loads_is_one_line_naming_the_setting() -> None:
    full = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 4 GiB\n"
    cuda, cpu = torch.device("cuda:0"), torch.device("cpu")
    with pytest.raises(ModelLoadError) as caught, loading_onto(cuda, "CAPTION_MODEL", "blip"):
        raise torch.OutOfMemoryError(full + "See documentation for Memory Management")
    assert str(caught.value) == (
        f"CAPTION_MODEL: cannot load 'blip' on cuda:0: {full.strip()}. "
        "Free the GPU's memory, or set DEVICE=cpu"
    )
    refused = r"^SEARCH_MODEL: .*: CUDA error: no kernel image"
    with pytest.raises(ModelLoadError, match=refused), loading_onto(cuda, "SEARCH_MODEL", "clip"):
        raise RuntimeError("CUDA error: no kernel image is available for execution")
    # Not the admin's to fix, on the CPU or on the GPU: as raised.
    for device in (cpu, cuda):
        with pytest.raises(RuntimeError, match=r"^a bug$"), loading_onto(device, "X", "clip"):
            raise RuntimeError("a bug")


def test_every_setting_is_listed_in_env_example_and_the_readme() -> None:
    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    for name in (field.name.upper() for field in dataclasses.fields(Settings)):
        assert f"\n{name}=" in example, name
        assert f"\n| `{name}` |" in readme, name


def test_the_pixel_limit_stops_at_pillows_own() -> None:
    """Pillow refuses larger images as bombs whatever MAX_IMAGE_PIXELS says."""
    assert PILLOW_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    assert parse_settings({"MAX_IMAGE_PIXELS": str(PILLOW_MAX_PIXELS)}).max_image_pixels == (
        PILLOW_MAX_PIXELS
    )


def test_a_rest_url_with_a_password_is_refused_without_repeating_it() -> None:
    """aiohttp refuses a request with both these and discord.py's Authorization header."""
    with pytest.raises(ConfigError) as caught:
        parse_settings({"DISCORD_API_URL": "https://glimpse:hunter2@proxy.example/api/v10"})
    assert str(caught.value).startswith("DISCORD_API_URL: must hold no user name or password")
    assert "hunter2" not in str(caught.value)
    gateway = parse_settings({"DISCORD_GATEWAY_URL": "wss://glimpse:hunter2@proxy.example"})
    assert gateway.discord_gateway_url == "wss://glimpse:hunter2@proxy.example"
    with pytest.raises(ConfigError) as caught:  # the REST proxy's URL put in the gateway's
        parse_settings({"DISCORD_GATEWAY_URL": "https://glimpse:hunter2@proxy.example"})
    assert str(caught.value) == "DISCORD_GATEWAY_URL: must be a ws or wss URL"
