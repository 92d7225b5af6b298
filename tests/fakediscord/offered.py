"""What a member's Discord client offers and lets them send: the simulated slash commands and
context menus refuse (NotOffered) what no client could send, so that a test cannot run a
command Discord would not show.

- Only synced commands are listed: an interaction carries the invoked command's id
  (receiving-and-responding.mdx, "Application Command Data Structure"), which only a
  registered command has (application-commands.mdx, "Registering a Command").
- A command's ``contexts`` (or, without them, ``dm_permission``) say where it is offered
  (application-commands.mdx, "Contexts"); the test server's DMs are DMs with the bot (BOT_DM).
- In a server, the member needs USE_APPLICATION_COMMANDS in the channel (permissions.mdx,
  "Permission Flags") and the command's ``default_member_permissions``; ``"0"`` leaves it to
  administrators (application-commands.mdx, "Using Default Permissions").
- The client sends only the command's options, every required one, and for an option with
  choices one of them (application-commands.mdx, "Application Command Option Structure").
"""

from __future__ import annotations

from collections.abc import Mapping

from . import payloads as p

GUILD, BOT_DM = 0, 1  # receiving-and-responding.mdx, "Interaction Context Types"


class NotOffered(ValueError):
    """A Discord client would not offer this command, or not send these options."""


def check_offered(cmd: dict | None, label: str, context: int, perms: int | None) -> dict:
    """The synced command, if the client offers it here; `perms`: the member's permissions in
    the channel (None in a DM)."""
    if cmd is None:
        raise NotOffered(f"{label} is not synced: Discord offers no such command")
    contexts = cmd.get("contexts")
    if contexts is not None and context not in contexts:
        raise NotOffered(f"{label} is not offered in interaction context {context}")
    if contexts is None and context == BOT_DM and cmd.get("dm_permission") is False:
        raise NotOffered(f"{label} is not offered in DMs (dm_permission false)")
    if perms is None:
        return cmd
    if not perms & p.USE_APPLICATION_COMMANDS:
        raise NotOffered(f"{label}: the member lacks Use Application Commands here")
    required = cmd.get("default_member_permissions")
    if (
        required is not None
        and not perms & p.ADMINISTRATOR
        and (int(required) == 0 or int(required) & ~perms)
    ):
        raise NotOffered(f"{label} needs permissions {required} (default_member_permissions)")
    return cmd


def check_options(defs: list[dict], values: Mapping[str, object], label: str) -> None:
    by_name = {d["name"]: d for d in defs}
    for name, value in values.items():
        d = by_name.get(name)
        if d is None:
            raise NotOffered(f"{label} has no option {name!r}")
        choices = [c["value"] for c in d.get("choices") or []]
        if choices and value not in choices:
            raise NotOffered(f"{label}: {value!r} is not among the choices of {name!r}")
    missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
    if missing:
        raise NotOffered(f"{label} needs its required option(s) {missing}")
