"""A link preview's key in the index: made from its image's address as Discord gives it, so
that no edit moves it and no renewal of a Discord link's signature changes it."""

from __future__ import annotations

from bot.chat.sources import embed_key
from bot.index.refs import EMBED_KEYS_FROM, SNOWFLAKES_FROM

CDN = "https://cdn.discordapp.com/attachments/1/2/cat.png"


def test_a_discord_links_signature_is_not_part_of_its_key() -> None:
    signed = f"{CDN}?ex=6700&is=66ff&hm=abc&"
    assert embed_key(signed) == embed_key(f"{CDN}?ex=6800&is=6700&hm=def&") == embed_key(CDN)
    assert embed_key(f"{CDN}?size=64&ex=1") == embed_key(f"{CDN}?size=64")
    assert embed_key(f"{CDN}?size=64") != embed_key(CDN)


def test_other_sites_addresses_count_as_given() -> None:
    site = "https://example.com/img"
    assert embed_key(f"{site}?id=1&hm=a") != embed_key(f"{site}?id=1&hm=b")
    assert embed_key(f"{site}?q=a%20b") != embed_key(f"{site}?q=a+b")  # not re-encoded
    assert embed_key(f"{site}?id=1") != embed_key(f"{site}?id=2")


def test_keys_lie_between_positions_and_snowflakes() -> None:
    keys = {embed_key(f"https://example.com/{n}.png") for n in range(2000)}
    assert len(keys) == 2000
    assert all(EMBED_KEYS_FROM <= key < SNOWFLAKES_FROM for key in keys)
