"""Settings from the environment and `.env`, typed and validated once at start."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

T = TypeVar("T")

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
DEFAULT_SEARCH_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_API_URL = "https://discord.com/api/v10"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DTYPES = ("auto", "float32", "bfloat16", "float16")

# Pillow refuses any image above its own limit as a decompression bomb (PIL.Image's
# MAX_IMAGE_PIXELS, 1 GiB / 4 / 3), so a larger MAX_IMAGE_PIXELS would promise what it cannot.
PILLOW_MAX_PIXELS = 89_478_485


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class Cooldown:
    rate: int
    per: float


@dataclass(frozen=True)
class Settings:
    discord_token: Secret | None = None
    command_prefix: str = "!"
    caption_model: str = DEFAULT_CAPTION_MODEL
    search_model: str = DEFAULT_SEARCH_MODEL
    device: str = "auto"
    dtype: str = "auto"
    data_dir: Path = Path("./data")
    max_image_bytes: int = 26_214_400
    max_image_pixels: int = 50_000_000
    max_aspect_ratio: float = 20.0
    caption_max_tokens: int = 30
    preload_models: bool = True
    log_level: str = "INFO"
    discord_api_url: str = DEFAULT_API_URL
    discord_gateway_url: str | None = None
    discord_connect_timeout_s: float = 60.0
    index_per_channel: int = 1000
    retention_days: float = 0.0
    ignore_channels: frozenset[int] = field(default_factory=frozenset)
    weak_match_below: float | None = None  # None: the search model family's default
    repost_min_score: float = 0.95
    alt_text_max_pending: int = 20
    cooldown: Cooldown | None = Cooldown(5, 60.0)
    owner_ids: frozenset[int] = field(default_factory=frozenset)
    batch_max: int | None = None
    batch_wait_ms: float | None = None
    max_pending: int = 64
    model_idle_unload_s: float = 0.0


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Reads the process environment over `env_file` (the environment wins), validating all."""
    return parse_settings(read_environment(environ, env_file))


def read_environment(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> dict[str, str]:
    """The process environment over `env_file`, as written (ConfigError if it cannot be read)."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        try:
            read = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "it is not UTF-8 text (save it as UTF-8)"
            raise ConfigError(str(env_file), f"cannot read it: {reason}") from None
        values.update({k: v for k, v in read.items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def export_hub_settings(env_file: Path = Path(".env")) -> None:
    """Puts `env_file`'s HF_* variables (HF_HOME, HF_HUB_OFFLINE, HF_TOKEN...) into the process
    environment where it has none: huggingface_hub reads only that, once, when first imported,
    so without this they counted under Docker (whose env_file exports them) and not otherwise."""
    if not env_file.is_file():
        return
    for name, value in dotenv_values(env_file).items():
        if name.startswith("HF_") and value is not None and name not in os.environ:
            os.environ[name] = value


class Secretive(ValueError):
    """A bad value that must not be shown back."""


def parse_settings(env: Mapping[str, str]) -> Settings:
    def get(name: str, parse: Callable[[str], T], default: T) -> T:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except Secretive as exc:  # the value holds a password: not repeated
            raise ConfigError(name, str(exc)) from None
        except ValueError as exc:
            raise ConfigError(name, f"{exc} (got {raw!r})") from None

    token = env.get("DISCORD_TOKEN", "").strip()
    default_cooldown: Cooldown | None = Cooldown(5, 60.0)
    return Settings(
        discord_token=Secret(token) if token else None,
        command_prefix=get("COMMAND_PREFIX", _prefix, "!"),
        caption_model=get("CAPTION_MODEL", str, DEFAULT_CAPTION_MODEL),
        search_model=get("SEARCH_MODEL", str, DEFAULT_SEARCH_MODEL),
        device=get("DEVICE", _device, "auto"),
        dtype=get("DTYPE", _choice(DTYPES), "auto"),
        data_dir=get("DATA_DIR", home_path, Path("./data")),
        max_image_bytes=get("MAX_IMAGE_BYTES", _int_range(1024, 1 << 31), 26_214_400),
        max_image_pixels=get("MAX_IMAGE_PIXELS", _int_range(1, PILLOW_MAX_PIXELS), 50_000_000),
        max_aspect_ratio=get("MAX_ASPECT_RATIO", _float_range(1.0, 1e6), 20.0),
        caption_max_tokens=get("CAPTION_MAX_TOKENS", _int_range(1, 512), 30),
        preload_models=get("PRELOAD_MODELS", _bool, True),
        log_level=get("LOG_LEVEL", _choice(LOG_LEVELS, upper=True), "INFO"),
        discord_api_url=get("DISCORD_API_URL", _url(("http", "https")), DEFAULT_API_URL),
        discord_gateway_url=get("DISCORD_GATEWAY_URL", _url(("ws", "wss")), None),
        discord_connect_timeout_s=get("DISCORD_CONNECT_TIMEOUT_S", _float_range(1.0, 3600.0), 60.0),
        index_per_channel=get("INDEX_PER_CHANNEL", _int_range(1, 1_000_000), 1000),
        retention_days=get("RETENTION_DAYS", _float_range(0.0, 1e5), 0.0),
        ignore_channels=get("IGNORE_CHANNELS", _id_set, frozenset()),
        weak_match_below=get("WEAK_MATCH_BELOW", _float_range(-1.0, 1.0), None),
        repost_min_score=get("REPOST_MIN_SCORE", _float_range(0.5, 1.0), 0.95),
        alt_text_max_pending=get("ALT_TEXT_MAX_PENDING", _int_range(1, 10_000), 20),
        cooldown=get("COOLDOWN", _cooldown, default_cooldown),
        owner_ids=get("OWNER_IDS", _id_set, frozenset()),
        batch_max=get("BATCH_MAX", _int_range(1, 1024), None),
        batch_wait_ms=get("BATCH_WAIT_MS", _float_range(0.0, 10_000.0), None),
        max_pending=get("MAX_PENDING", _int_range(1, 100_000), 64),
        model_idle_unload_s=get("MODEL_IDLE_UNLOAD_S", _float_range(0.0, 1e9), 0.0),
    )


def home_path(raw: str) -> Path:
    """`~` as a shell would read it: python-dotenv does not expand it, and a folder named `~`
    in the working directory is a trap (`rm -rf ~` to clean it up)."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # no HOME, and a user id with no passwd entry (a container's)
        raise ValueError("cannot tell the home folder that ~ stands for") from None


def _prefix(raw: str) -> str:
    if any(ch.isspace() for ch in raw):
        raise ValueError("must not contain spaces")
    return raw


def _device(raw: str) -> str:
    value = raw.lower()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError("must be auto, cpu, cuda or cuda:N")


def _choice(options: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ValueError("must be a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not (math.isfinite(value) and low <= value <= high):  # nan or inf, whatever the bounds
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        scheme, sep, rest = raw.partition("://")
        secret = "@" in rest.split("/", 1)[0]  # a password: never repeated in the error
        if not sep or scheme.lower() not in schemes or not rest.strip("/"):
            raise (Secretive if secret else ValueError)(f"must be a {' or '.join(schemes)} URL")
        if "http" in schemes and secret:
            # aiohttp refuses a request with both (discord.py sends the token in the header).
            raise Secretive("must hold no user name or password: Discord's token is the login")
        return raw.rstrip("/")

    return parse


def _id_set(raw: str) -> frozenset[int]:
    ids = set()
    for part in raw.replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit():
            raise ValueError("must be Discord IDs (numbers) separated by commas")
        ids.add(int(part))
    return frozenset(ids)


def _cooldown(raw: str) -> Cooldown | None:
    if raw == "0":
        return None
    rate, sep, per = raw.partition("/")
    try:
        cooldown = Cooldown(int(rate), float(per)) if sep else None
    except ValueError:
        cooldown = None
    # A period of nan or inf would pass `per <= 0`, then break the "try again in" reply.
    if cooldown is None or cooldown.rate < 1 or not 0 < cooldown.per < math.inf:
        raise ValueError("must be COMMANDS/SECONDS like 5/60, or 0 for off")
    return cooldown
