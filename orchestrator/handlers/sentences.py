"""Sentences out of a token stream, as soon as each is complete.

The LLM handler speaks the first sentence of an answer while the model still
writes the rest, so it must tell a sentence's end from a full stop that is not
one. A sentence ends at ``.``, ``!``, ``?`` or ``…`` (and their Arabic and
Devanagari kin) followed by white space and then a character that is not a
lower-case letter; at the CJK full stop, exclamation or question mark at
once (CJK needs no space);
and at a blank line. Closing quotes and brackets stay with their sentence.
Not an end: a decimal (``3.14``), a known abbreviation (``Dr.``, ``e.g.``),
an initial (``J. Smith``), a list number (``1. First``). In doubt it waits:
two sentences said as one cost a little latency, one cut in two sounds wrong.
"""

from __future__ import annotations

import re

# Ends that need white space after them, and ends that do not (CJK full stops).
_SPACED_ENDS = ".!?\u2026\u203c\u2047\u061f\u06d4\u0964"  # … ‼ ⁇ and Arabic, Urdu, Devanagari
_IMMEDIATE_ENDS = "\u3002\uff01\uff1f"  # CJK full stop, exclamation and question marks
_CLOSERS = "\"')]}\u00bb\u201d\u2019\u300d\u300f\uff09"  # and the closing quotes and brackets
_OPENERS = "\"'([{\u00ab\u201c\u2018"
ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e",
        "cf", "fig", "approx", "inc", "ltd", "co", "corp", "dept", "est", "jan",
        "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m",
        "p.m", "u.s", "u.k", "ph.d", "min", "max", "vol", "ca", "gen", "col", "lt", "sgt",
    }
)  # fmt: skip
_END = re.compile(
    rf"(?P<end>[{re.escape(_SPACED_ENDS)}]+[{re.escape(_CLOSERS)}]*)(?P<space>\s+)(?P<next>\S)"
    rf"|(?P<cjk>[{re.escape(_IMMEDIATE_ENDS)}]+[{re.escape(_CLOSERS)}]*)"
    r"|(?P<paragraph>\n\s*\n)"
)
_WORD_BEFORE = re.compile(r"(\S+)$")
# How far back a new piece of text makes the splitter look again: an end
# waiting for the character after its white space sits near the buffer's end.
_LOOK_BACK = 64


class SentenceSplitter:
    """Feed text as it streams in; take the sentences completed so far.

    ``feed`` returns the sentences the new text completed (stripped, in
    order); ``flush`` returns what is left once the stream has ended.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._scan_from = 0  # where the next search for an end starts

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        sentences: list[str] = []
        start = 0
        position = self._scan_from
        while match := _END.search(self._buffer, position):
            if match.group("end") is not None:
                cut = match.start("space")
                if not _ends_sentence(self._buffer[start : match.start("end")], match):
                    position = match.start("next")
                    continue
                resume = match.start("next")
            else:
                cut = resume = match.end()
            sentence = self._buffer[start:cut].strip()
            if sentence:
                sentences.append(sentence)
            start = position = resume
        self._buffer = self._buffer[start:]
        # An end still open to doubt (no following character yet) is looked at again.
        self._scan_from = max(0, len(self._buffer) - _LOOK_BACK)
        return sentences

    def flush(self) -> str:
        """The rest of the text, once no more will come."""
        rest, self._buffer, self._scan_from = self._buffer.strip(), "", 0
        return rest


def _ends_sentence(before: str, match: re.Match[str]) -> bool:
    """Whether the ``.``/``!``/``?`` run in ``match`` ends the sentence ``before`` it."""
    end = match.group("end")
    following = match.group("next")
    if following.islower():
        return False  # "e.g. the", "wait... what", "3 p.m. today"
    if end.rstrip(_CLOSERS) != ".":
        return True  # "!", "?", "?!", "…", "..." before a capital
    word = _WORD_BEFORE.search(before)
    if word is None:
        return True
    token = word.group(1).lstrip(_OPENERS)
    lowered = token.lower()
    if lowered in ABBREVIATIONS:
        return False
    if len(token) == 1 and token.isalpha() and token.isupper():
        return False  # an initial: "J. Smith"
    # A list number ("1. First") when the number starts its line.
    return not (token.isdigit() and (len(before) == len(token) or before[-len(token) - 1] == "\n"))
