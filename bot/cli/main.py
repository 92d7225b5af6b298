"""The command line's parser and dispatch: each subcommand's work lives beside this file."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from bot.config import ConfigError, Settings, export_hub_settings, load_settings
from bot.log_secrets import hide_tokens

EXIT_FAILED = 1


def build_parser(prog: str = "python -m bot") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Glimpse: a Discord bot that captions images and finds them by description.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the Discord bot (the default)")

    caption = commands.add_parser("caption", help="caption image files with the caption model")
    caption.add_argument("images", nargs="+", metavar="PATH", help="image files or folders")
    caption.add_argument("--prompt", help="start each caption with this text")

    find = commands.add_parser(
        "find", help="rank image files and folders by how well they match a description"
    )
    find.add_argument("query", metavar="QUERY", help='what to look for, e.g. "a red square"')
    find.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    find.add_argument("--top", type=_positive_int, metavar="N", help="print only the N best")

    commands.add_parser(
        "check",
        help="validate the settings, load both models, caption and embed a test image "
        "(does not connect to Discord)",
    )
    commands.add_parser(
        "download-models",
        help="fetch both configured checkpoints into the model cache (HF_HOME) ahead of time",
    )
    for subcommand in commands.choices.values():
        subcommand.set_defaults(usage=subcommand)  # whose usage a usage error shows
    return parser


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Ctrl-C exits with 130 and SIGTERM with 0, quietly, at any moment; `run` stops the bot
    gracefully on either once it is under way."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_quietly(_signum: int, _frame: object) -> NoReturn:
    raise SystemExit(0)


def _main(argv: Sequence[str] | None) -> int:
    # As it was run: the script that installing the package puts on PATH, or the module.
    installed = Path(sys.argv[0]).name == "glimpse"
    parser = build_parser("glimpse" if installed else "python -m bot")
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would show the top-level usage; the subcommand's is the useful one
        usage: argparse.ArgumentParser = getattr(args, "usage", parser)
        usage.error(f"unrecognized arguments: {' '.join(unknown)}")
    command = args.command or "run"
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    export_hub_settings()  # before anything imports huggingface_hub
    # The one-shot commands print results; routine INFO lines would only bury them.
    quiet = command != "run" and settings.log_level != "DEBUG"
    setup_logging("WARNING" if quiet else settings.log_level)
    handlers: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "run": run_bot,
        "caption": caption_command,
        "find": find_command,
        "check": check_command,
        "download-models": download_models_command,
    }
    return handlers[command](args, settings)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    hide_tokens()
    import huggingface_hub.constants
    import transformers
    from huggingface_hub.utils.tqdm import enable_progress_bars

    # Weight-loading bars and notices such as "torchvision not found, using PIL" are noise
    # in a bot's log; downloads keep the hub's own progress bars.
    transformers.logging.disable_progress_bar()
    if not huggingface_hub.constants.HF_HUB_DISABLE_PROGRESS_BARS:  # (else it warns)
        enable_progress_bars()  # the hub's, which the line above turned off too
    if level != "DEBUG":
        transformers.logging.set_verbosity_error()
    # transformers and huggingface_hub each print to stderr through a handler of their own,
    # and the hub's also reaches ours, so each of its warnings appeared twice. Through the one
    # handler above, every line appears once, in the same format.
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
    hub_log = logging.getLogger("huggingface_hub")
    for handler in list(hub_log.handlers):
        hub_log.removeHandler(handler)


def run_bot(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run

    return run(settings)


def caption_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.files import caption_files

    return caption_files(args.images, args.prompt, settings)


def find_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.files import find_files

    return find_files(args.query, args.paths, args.top, settings)


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.check import check

    return check(settings)


def download_models_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.download import download_models

    return download_models(settings)
