"""The sentence splitter: sentences out of a token stream, as soon as each is complete."""

from __future__ import annotations

import pytest

from orchestrator.handlers.sentences import SentenceSplitter


def split(text: str, *, piece: int = 1) -> list[str]:
    """``text`` fed ``piece`` characters at a time, then flushed."""
    splitter = SentenceSplitter()
    sentences: list[str] = []
    for start in range(0, len(text), piece):
        sentences += splitter.feed(text[start : start + piece])
    rest = splitter.flush()
    return [*sentences, rest] if rest else sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? I am fine!", ["Hello there.", "How are you?", "I am fine!"]),
        ("Pi is 3.14 or so. Yes.", ["Pi is 3.14 or so.", "Yes."]),
        ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
        ("Use a tool, e.g. a hammer. Done.", ["Use a tool, e.g. a hammer.", "Done."]),
        ("J. R. R. Tolkien wrote it. Really.", ["J. R. R. Tolkien wrote it.", "Really."]),
        ("Wait... what happened? Nothing.", ["Wait... what happened?", "Nothing."]),
        ("Well... Maybe. Or not.", ["Well...", "Maybe.", "Or not."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("1. First item\n2. Second item", ["1. First item\n2. Second item"]),
        ("Title\n\nBody text here.", ["Title", "Body text here."]),
        ("你好。我是数字人！你呢？", ["你好。", "我是数字人！", "你呢？"]),  # noqa: RUF001
        ("こんにちは。元気ですか？", ["こんにちは。", "元気ですか？"]),  # noqa: RUF001
        ("مرحبا؟ أنا بخير.", ["مرحبا؟", "أنا بخير."]),
        ("It is 3 p.m. today. Fine.", ["It is 3 p.m. today.", "Fine."]),
        ("No ending punctuation", ["No ending punctuation"]),
        ("", []),
    ],
)
def test_sentences_split_where_they_end_and_only_there(text: str, expected: list[str]) -> None:
    """Abbreviations, decimals, initials, ellipses, quotes, lists and CJK are told apart,
    whether the text comes a character at a time or all at once."""
    assert split(text, piece=1) == expected
    assert split(text, piece=len(text) or 1) == expected
    assert split(text, piece=4) == expected


def test_a_sentence_is_given_as_soon_as_the_next_one_starts() -> None:
    """The end of a sentence is known at the first character of the next one."""
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there.") == []
    assert splitter.feed(" ") == []
    assert splitter.feed("H") == ["Hello there."]
    assert splitter.feed("ow are you") == []
    assert splitter.flush() == "How are you"


def test_a_cjk_full_stop_ends_a_sentence_at_once() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("你好。") == ["你好。"]


def test_a_long_text_without_an_end_is_kept_whole() -> None:
    splitter = SentenceSplitter()
    for _ in range(2000):
        assert splitter.feed("word ") == []
    assert splitter.flush() == ("word " * 2000).strip()
