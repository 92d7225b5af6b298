"""Alt text: the words people wrote for their images, and when they say what a query says.

An alt text says what a query says when it contains every word of the query, in any order and
case, a plural matching its singular; filler words ("a", "the", "of", "photo"...) need not be
there. Matching words rather than comparing CLIP text embeddings is deliberate: CLIP's text
encoder rates unrelated short texts as close (on the test model, "hello world" and "a blue
circle" have a cosine of 0.86), so an unrelated alt text could not be kept from lifting a
picture above a better one.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
MAX_WORDS = 16  # a query's words that count (CLIP reads no more than 77 tokens anyway)
FILLER = frozenset(
    (
        *("a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "with", "for", "from"),
        *("by", "is", "are", "this", "that", "these", "those", "some"),
        *("my", "our", "your", "his", "her", "its", "their"),
        *("photo", "photos", "picture", "pictures", "image", "images", "pic", "pics"),
    )
)

Terms = tuple[tuple[str, ...], ...]  # for each query word, its forms, each padded with spaces


def alt_words(text: str | None) -> str | None:
    """The words of an alt text as stored for matching: casefolded, one space between them and
    one at each end (so that `instr(alt_words, ' cat ')` finds the whole word); None if none."""
    words = _WORD.findall((text or "").casefold())
    return f" {' '.join(words)} " if words else None


def query_terms(query: str) -> Terms:
    """What an alt text must contain to say what `query` says: for each word that is not
    filler, one of its forms."""
    words = [w for w in dict.fromkeys(_WORD.findall(query.casefold())) if w not in FILLER]
    return tuple(tuple(f" {form} " for form in _forms(word)) for word in words[:MAX_WORDS])


def _forms(word: str) -> list[str]:
    """The word, its plurals, and its singular if it looks plural (cat: cats, cates; puppies:
    puppy; glasses: glass). A wrong guess costs nothing: it matches a word nobody wrote."""
    forms = [word, word + "s", word + "es"]
    if word.endswith("y") and len(word) > 2:
        forms.append(word[:-1] + "ies")
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        forms.append(word[:-2])
    if word.endswith("s") and len(word) > 2:
        forms.append(word[:-1])
    return list(dict.fromkeys(forms))
