"""The `find` syntax: a query, then optional `top: N` and `scope: channel|server`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.find_syntax import FindRequest, FindSyntaxError, make_request, parse_find
from bot.chat.people import named

PARSED = [
    # (what the user types after `!find`, query, top, scope)
    ("a photo of parrots", "a photo of parrots", 1, "channel"),
    ('"a photo of parrots"', "a photo of parrots", 1, "channel"),
    ("“a photo of parrots”", "a photo of parrots", 1, "channel"),
    ("  a   photo of parrots  ", "a photo of parrots", 1, "channel"),
    ("parrots top: 3", "parrots", 3, "channel"),
    ("parrots top:3", "parrots", 3, "channel"),
    ("parrots top: 10", "parrots", 10, "channel"),
    ("parrots scope: server", "parrots", 1, "server"),
    ("parrots scope:channel", "parrots", 1, "channel"),
    ("parrots TOP: 2 Scope: SERVER", "parrots", 2, "server"),
    ("parrots scope:server top:4", "parrots", 4, "server"),
    ('"a photo of parrots" top: 2 scope: server', "a photo of parrots", 2, "server"),
    ('"parrots"top:2', "parrots", 2, "channel"),
    # Quoted queries are verbatim, flag words included.
    ('"a stop: sign"', "a stop: sign", 1, "channel"),
    ('"a stop: sign" top: 2', "a stop: sign", 2, "channel"),
    ("“top: 3 parrots” scope: server", "top: 3 parrots", 1, "server"),
    ('" spaced out "', " spaced out ", 1, "channel"),
    # Only whole `top:`/`scope:` words after the query are flags.
    ("a stop: sign", "a stop: sign", 1, "channel"),
    ("laptop: open on a desk", "laptop: open on a desk", 1, "channel"),
    ("telescope: pointing up", "telescope: pointing up", 1, "channel"),
    ("top: 3 of the charts", "top: 3 of the charts", 1, "channel"),
    ("desktop top: 2", "desktop", 2, "channel"),
    ("scope:server parrots", "scope:server parrots", 1, "channel"),
    # An opening apostrophe quotes only when it closes and nothing but flags follows.
    ("'90s cars", "'90s cars", 1, "channel"),
    ("‘tis the season top: 2", "‘tis the season", 2, "channel"),
    ("'90s and 2000's cars", "'90s and 2000's cars", 1, "channel"),
    ("'a stop: sign' top: 2", "a stop: sign", 2, "channel"),
    ("‘a stop: sign’", "a stop: sign", 1, "channel"),
    # „ closes with “ (German) or ” (Polish, Romanian, Hungarian, Dutch).
    ("„Papageien auf: Ästen“ top: 2", "Papageien auf: Ästen", 2, "channel"),
    ("„papugi na: gałęzi” scope: server", "papugi na: gałęzi", 1, "server"),
    ("«perroquets» top: 3", "perroquets", 3, "channel"),
]


@pytest.mark.parametrize(("text", "query", "top", "scope"), PARSED)
def test_parses(text: str, query: str, top: int, scope: str) -> None:
    assert parse_find(text) == FindRequest(query, top, scope)  # type: ignore[arg-type]


REJECTED = [
    # (input, words the message must contain to tell the user what to type)
    ("", "say what to look for"),
    ("   ", "say what to look for"),
    ('""', "say what to look for"),
    ("“  ”", "say what to look for"),
    ("top: 3", "say what to look for"),
    ('"parrots', "closing quote"),
    ("“parrots", "closing quote"),
    ("parrots top: 0", "from 1 to 10"),
    ("parrots top: 11", "from 1 to 10"),
    ("parrots top: -1", "from 1 to 10"),
    ("parrots top: three", "from 1 to 10"),
    ("parrots top: 2.5", "from 1 to 10"),
    ("parrots scope: everywhere", "`channel` or `server`"),
    ("parrots scope: guild top: 2", "`channel` or `server`"),
    ("parrots top: 2 top: 3", "given twice"),
    ("parrots scope: server SCOPE: channel", "given twice"),
    ('"parrots" please', "put the query in quotes"),
    ('"parrots" top:', "needs a value"),
]


@pytest.mark.parametrize(("text", "says"), REJECTED)
def test_rejects_with_a_message_saying_what_to_type(text: str, says: str) -> None:
    with pytest.raises(FindSyntaxError) as error:
        parse_find(text)
    assert says in str(error.value)


@pytest.mark.parametrize(
    ("text", "top", "scope"),
    [("", 1, "channel"), ('" "', 1, "channel"), ("top: 3", 3, "channel"),
     ("TOP: 2 scope: server", 2, "server")],
)  # fmt: skip
def test_no_query_is_allowed_where_an_image_may_stand_for_it(
    text: str, top: int, scope: str
) -> None:
    assert parse_find(text, example=True) == FindRequest("", top, scope)  # type: ignore[arg-type]
    assert parse_find("parrots", example=True) == FindRequest("parrots")
    assert make_request("", 4, "server", example=True) == FindRequest("", 4, "server")
    with pytest.raises(FindSyntaxError, match="from 1 to 10"):
        parse_find("top: 0", example=True)


@pytest.mark.parametrize("text", ["parrots top:", "parrots top: 3 scope:"])
def test_a_flag_without_a_value_is_an_error(text: str) -> None:
    with pytest.raises(FindSyntaxError, match="needs a value"):
        parse_find(text)


@pytest.mark.parametrize("value", ["²", "³", "①"])
def test_a_digit_like_symbol_for_top_is_a_syntax_error(value: str) -> None:
    with pytest.raises(FindSyntaxError, match="from 1 to 10"):
        parse_find(f"parrots top: {value}")


def test_make_request_checks_the_slash_commands_options_the_same_way() -> None:
    assert make_request("parrots") == FindRequest("parrots", 1, "channel")
    assert make_request(" parrots ", 10, "SERVER") == FindRequest("parrots", 10, "server")
    assert make_request('"a stop: sign"', 3) == FindRequest("a stop: sign", 3, "channel")
    assert make_request("“parrots”") == FindRequest("parrots", 1, "channel")
    assert make_request("„papugi”") == FindRequest("papugi", 1, "channel")
    assert make_request("„Papageien“") == FindRequest("Papageien", 1, "channel")
    assert make_request("top: 3 parrots") == FindRequest("top: 3 parrots", 1, "channel")


@pytest.mark.parametrize(
    ("query", "top", "scope", "says"),
    [
        ("", 1, "channel", "say what to look for"),
        ('"  "', 1, "channel", "say what to look for"),
        ("parrots", 0, "channel", "from 1 to 10"),
        ("parrots", 11, "channel", "from 1 to 10"),
        ("parrots", -2, "channel", "from 1 to 10"),
        ("parrots", 1, "guild", "`channel` or `server`"),
    ],
)
def test_make_request_rejects_bad_options(query: str, top: int, scope: str, says: str) -> None:
    with pytest.raises(FindSyntaxError) as error:
        make_request(query, top, scope)
    assert says in str(error.value)


# --- properties -------------------------------------------------------------------------------

QUOTES = "\"'“”„«»‘’"
# Words a user might type in a query: no whitespace (the separator), no colon, no quotes.
words = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
        blacklist_characters=":" + QUOTES,
    ),
    min_size=1,
    max_size=12,
)


def _any_case(draw: st.DrawFn, word: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in word)


@st.composite
def flags(draw: st.DrawFn) -> tuple[str, int, str]:
    """Trailing flags as typed, and the top and scope they mean."""
    top = draw(st.integers(1, 10))
    scope = draw(st.sampled_from(["channel", "server"]))
    chosen = draw(st.sets(st.sampled_from(["top", "scope"])))
    typed = []
    for name in draw(st.permutations(sorted(chosen))):
        value = str(top) if name == "top" else _any_case(draw, scope)
        colon = draw(st.sampled_from([":", ": ", ":  "]))
        typed.append(f"{_any_case(draw, name)}{colon}{value}")
    return " ".join(typed), top if "top" in chosen else 1, scope if "scope" in chosen else "channel"


@settings(max_examples=300)
@given(query=st.lists(words, min_size=1, max_size=8), typed_flags=flags())
def test_unquoted_query_and_flags_round_trip(
    query: list[str], typed_flags: tuple[str, int, str]
) -> None:
    typed, top, scope = typed_flags
    assert parse_find(f"{' '.join(query)} {typed}") == FindRequest(" ".join(query), top, scope)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(
    quotes=st.sampled_from([('"', '"'), ("“", "”")]),
    inner=st.text(min_size=1).filter(str.strip),
    typed_flags=flags(),
)
def test_quoted_query_is_taken_verbatim(
    quotes: tuple[str, str], inner: str, typed_flags: tuple[str, int, str]
) -> None:
    opening, closing = quotes
    inner = inner.replace(closing, "")
    if not inner.strip():
        inner = "parrots"
    typed, top, scope = typed_flags
    parsed = parse_find(f"{opening}{inner}{closing} {typed}")
    assert parsed == FindRequest(inner, top, scope)  # type: ignore[arg-type]


# Text made of query words, flag names, quotes and odd values: any outcome but a crash.
tokens = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Z", "C")), min_size=1),
    st.sampled_from(["top:", "TOP:", "scope:", "top", ":", '"', "“", "”", "0", "11", "-1"]),
    st.from_regex(r"\A(top|scope): ?[a-z0-9.\-]{0,4}\Z"),
)


@settings(max_examples=300)
@given(st.lists(tokens, max_size=8).map(" ".join))
def test_any_text_parses_or_gives_a_syntax_error(text: str) -> None:
    try:
        request = parse_find(text)
    except FindSyntaxError as error:
        assert str(error)
    else:
        assert request.query.strip()
        assert 1 <= request.top <= 10
        assert request.scope in ("channel", "server")


@pytest.mark.parametrize(
    "typed", ['"Jan Kowalski"', "“Jan Kowalski”", "„Jan Kowalski“", "„Jan Kowalski”"]
)
def test_a_name_in_quotes_is_the_name(typed: str) -> None:
    assert named(typed) == "Jan Kowalski"
    assert named(typed[:-1]) == typed[:-1]  # never closed: taken as typed
    assert named(f" {typed[0]}@Jan Kowalski{typed[-1]}") == "Jan Kowalski"
