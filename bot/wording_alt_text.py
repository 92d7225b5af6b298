"""Every sentence about automatic alt text: `alttext on|off` and the description replies.

Part of `bot.wording`, which re-exports it: callers write `wording.X` for any sentence.
"""

from __future__ import annotations

# -- automatic alt text (`alttext on`) -------------------------------------------------------------

ALT_TEXT_USAGE = "say `alttext on`, `alttext off`, or just `alttext` to see whether it is on"


def alt_text_on(channel: str, already: bool) -> str:
    start = "Images are already described" if already else "Done: I'll describe images"
    return (
        f"{start} in {channel} and its threads: an image posted without alt text gets a reply "
        "with an automatic description, which its poster or a moderator can delete by reacting "
        "with 🗑️. `alttext off` stops it."
    )


def alt_text_off(channel: str, was_on: bool) -> str:
    if not was_on:
        return f"Images were not described in {channel}."
    return f"Done: I no longer describe images in {channel}."


def alt_text_state(channel: str, on: bool) -> str:
    if on:
        return (
            f"Images without alt text are described in {channel} and its threads; "
            "`alttext off` stops it."
        )
    return (
        f"Images without alt text are not described in {channel}; `alttext on` starts it "
        "(Manage Messages)."
    )


def automatic_alt_text(description: str, position: int = 1, total: int = 1) -> str:
    """One image's line in a description reply: saying it is automatic comes first, then the
    description; its number, when there are several, last."""
    number = f" (image {position})" if total > 1 else ""
    return f"Automatic alt text: {description}{number}"
