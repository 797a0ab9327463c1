"""Runs of a description's words that could name a chemical (no chemistry: string rules only).

:func:`candidate_spans`: every run of 1..``max_tokens`` whitespace tokens of a description that could
be a name: edge punctuation and unbalanced edge brackets stripped (:func:`clean_span`), no sentence or
clause break (a token ending in ``.,;:!?``) inside, no stop-word or number anywhere ("phosphate and
diphosphate" is two names, not one), holding a letter. Used by the ``structure_match`` /
``relation_match`` scorers and the ``chem_names`` text encoder (through :mod:`zoo.api`) and by
``zoo serve`` to show the names found in a query.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_TOKENS = 4
BREAK_CHARS = ".,;:!?"
TRAILING = BREAK_CHARS + "\"'"
LEADING = "\"'"
BRACKETS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in BRACKETS.items()}
#: words that are never part of a chemical name (a capital letter alone is not a stop-word: "coenzyme A")
STOP_WORDS = frozenset("""
a an the this that these those it its is are was were be been being has have had having of in on at by for from
to into onto with without within as and or nor but not no than then also which who whose whom where when while
via per each both either such other any all some one two three four five six seven eight nine ten several
molecule molecules compound compounds derivative derivatives group groups position positions substituted
member members class role roles conjugate obtained formal formally resulting results related functionally
derives derived used found isolated natural product metabolite agent
""".split())


class Span(NamedTuple):
    """Tokens ``start:end`` of a description (whitespace split), cleaned to ``text``."""

    start: int
    end: int
    text: str


def _wrapped(text: str) -> bool:
    """Whether the first character's bracket closes at the last character: ``(benzene)``, not ``(2E)-but-2-ene``."""
    if text[0] not in BRACKETS or text[-1] != BRACKETS[text[0]]:
        return False
    depth = 0
    for i, char in enumerate(text):
        depth += char == text[0]
        depth -= char == text[-1]
        if depth == 0:
            return i == len(text) - 1
    return False


def clean_span(text: str) -> str:
    """``text`` without edge punctuation, quotes, wrapping brackets and unbalanced edge brackets."""
    while True:
        before = text
        text = text.rstrip(TRAILING).lstrip(LEADING)
        if not text:
            return text
        if len(text) >= 2 and _wrapped(text):
            text = text[1:-1]
        elif text[0] in BRACKETS and text.count(text[0]) > text.count(BRACKETS[text[0]]):
            text = text[1:]
        elif text[-1] in CLOSERS and text.count(text[-1]) > text.count(CLOSERS[text[-1]]):
            text = text[:-1]
        if text == before:
            return text


def _is_stop(word: str) -> bool:
    """A stop-word (any case, except a capital letter alone: "coenzyme A") or a number."""
    return (word != word.upper() or len(word) > 1) and word.lower() in STOP_WORDS or word.replace(".", "").isdigit()


def candidate_spans(text: str, max_tokens: int = MAX_TOKENS) -> list[Span]:
    """Spans of 1..``max_tokens`` tokens of ``text`` that could name a chemical (see the module docs)."""
    tokens = text.split()
    stop = [_is_stop(clean_span(token)) for token in tokens]
    spans = []
    for start in range(len(tokens)):
        if stop[start]:
            continue
        for end in range(start + 1, min(start + max_tokens, len(tokens)) + 1):
            if end - start > 1 and (tokens[end - 2][-1] in BREAK_CHARS or stop[end - 2]):
                break  # a sentence or clause break, or a stop-word ("X and Y"), inside; longer spans have it too
            if stop[end - 1]:
                continue
            cleaned = clean_span(" ".join(tokens[start:end]))
            if len(cleaned) >= 3 and any(c.isalpha() for c in cleaned):
                spans.append(Span(start, end, cleaned))
    return spans
