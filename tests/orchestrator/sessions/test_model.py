"""The session record: lazily made transcript and event log, its serialised form, and
the bounds on what it keeps."""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

import pytest

from orchestrator.sessions.model import (
    DEFAULT_EVENT_LOG,
    DEFAULT_TRANSCRIPT_MAX_BYTES,
    DEFAULT_TRANSCRIPT_TURNS,
    MAX_EVENT_NAME_CHARS,
    MAX_TURN_CHARS,
    MAX_VARIABLES_BYTES,
    Session,
    VariablesRefused,
    VariableWriter,
    check_reply_variables,
)


def _issued() -> Session:
    return Session(id="s", issuer="k", expires_at=2_000)


def test_an_issued_session_holds_no_transcript_or_event_log_until_used() -> None:
    """A record for a token whose host never connects stays small: no deques are made
    by creating it, serialising it or reading it back."""
    session = _issued()
    data = session.to_dict()
    again = Session.from_dict(data)
    assert data["transcript"] == [] and data["events"] == []
    for record in (session, again):
        assert record._transcript is None and record._events is None
    assert sys.getsizeof(session) < 512


def test_transcript_and_events_appear_on_first_use_and_survive_a_round_trip() -> None:
    """The first turn or event makes its deque; to_dict/from_dict keep both."""
    session = _issued()
    session.add_turn("user", "hello")
    session.events.append({"name": "custom", "kind": "event", "at": 1.0})
    assert session.transcript.maxlen == DEFAULT_TRANSCRIPT_TURNS
    again = Session.from_dict(session.to_dict())
    assert [t.text for t in again.transcript] == ["hello"]
    assert list(again.events) == [{"name": "custom", "kind": "event", "at": 1.0}]


def test_a_long_entry_keeps_its_start_and_says_it_was_cut() -> None:
    """Past MAX_TURN_CHARS a transcript entry keeps the first characters and the
    original length; the mark survives a round trip; shorter entries carry no mark."""
    session = _issued()
    session.add_turn("user", "x" * (MAX_TURN_CHARS + 500))
    session.add_turn("dp", "short")
    long_entry, short_entry = session.to_dict()["transcript"]
    assert long_entry["text"] == "x" * MAX_TURN_CHARS
    assert long_entry["truncated"] is True
    assert long_entry["original_length"] == MAX_TURN_CHARS + 500
    assert "truncated" not in short_entry and "original_length" not in short_entry
    again = Session.from_dict(session.to_dict())
    assert again.to_dict()["transcript"] == session.to_dict()["transcript"]


def test_the_transcript_drops_its_oldest_entries_past_its_byte_budget() -> None:
    """Entries count their text's size against the budget (the default or the one
    bound_transcript sets); the oldest go first and the newest always stays."""
    session = _issued()
    emoji = "\U0001f600" * MAX_TURN_CHARS  # 4 bytes a character: the dearest entry
    for index in range(DEFAULT_TRANSCRIPT_TURNS):
        session.add_turn("user", f"{index}{emoji}")
    assert session.transcript_bytes <= DEFAULT_TRANSCRIPT_MAX_BYTES
    assert session.transcript_bytes == sum(turn.cost for turn in session.transcript)
    assert len(session.transcript) == DEFAULT_TRANSCRIPT_MAX_BYTES // session.transcript[0].cost
    assert session.transcript[-1].text.startswith(str(DEFAULT_TRANSCRIPT_TURNS - 1))
    session.bound_transcript(turns=DEFAULT_TRANSCRIPT_TURNS, max_bytes=20_000)
    assert [t.text[:3] for t in session.transcript] == ["199"]
    session.bound_transcript(turns=2, max_bytes=DEFAULT_TRANSCRIPT_MAX_BYTES)
    for text in ("a", "b", "c"):
        session.add_turn("dp", text)
    assert [t.text for t in session.transcript] == ["b", "c"]
    assert session.transcript_bytes == sum(turn.cost for turn in session.transcript)


def test_the_event_log_keeps_names_cut_short() -> None:
    """An unhandled message's name is kept to MAX_EVENT_NAME_CHARS, 50 entries at most."""
    session = _issued()
    for _ in range(DEFAULT_EVENT_LOG + 10):
        session.add_event("n" * 60_000, "event")
    assert len(session.events) == DEFAULT_EVENT_LOG
    assert {event["name"] for event in session.events} == {"n" * MAX_EVENT_NAME_CHARS}


def test_a_session_flooded_with_the_largest_input_stays_within_its_bytes() -> None:
    """Whatever a peer sends (max-size turns of 4-byte characters, long message
    names), a session's transcript and event log stay near the transcript budget
    plus a fixed few KiB, not TRANSCRIPT_TURNS times the frame size."""
    big = "\U0001f600" * 16_000  # a 64 KiB frame's worth of text
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        session = _issued()
        for _ in range(DEFAULT_TRANSCRIPT_TURNS * 2):
            session.add_turn("user", big)
            session.add_turn("dp", f"You said: {big}")
            session.add_event("n" * 60_000, "event")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(session.transcript) > 1
    assert held < DEFAULT_TRANSCRIPT_MAX_BYTES + 32 * 1024, held


@pytest.mark.parametrize("persona_id", [1, "1", "avatar-2"], ids=["int", "str", "name"])
def test_the_persona_id_keeps_its_type_through_the_stored_json(persona_id: int | str) -> None:
    """The persona id the DP used (int or string) survives to_record -> JSON -> from_dict,
    as in the Redis store, so replies after a reload still send it with the DP's type;
    the public view shows it as a string whichever it was."""
    session = _issued()
    session.persona_id = persona_id
    again = Session.from_dict(json.loads(json.dumps(session.to_record())))
    assert again.persona_id == persona_id
    assert type(again.persona_id) is type(persona_id)
    assert again.to_dict()["persona_id"] == str(persona_id)


@pytest.mark.parametrize("stored", [None, True, 1.5, [1]])
def test_a_stored_persona_id_of_another_type_reads_as_the_default(stored: object) -> None:
    """A record whose persona_id is not an int or a string reads back as "1"."""
    data = _issued().to_dict()
    data["persona_id"] = stored
    assert Session.from_dict(data).persona_id == "1"


def test_a_replys_latency_survives_the_json_round_trip_within_its_bounds() -> None:
    """``latency_ms`` is kept (as numbers, at most eight stages) through the stored form."""
    session = Session(id="s", issuer="k", expires_at=2**31)
    turn = session.add_turn("dp", "hi", timed=True)
    assert turn.latency_ms == {}
    session.record_latency(turn, {"handler_done": 1.5, "first_frame": 2.0})
    data = json.loads(json.dumps(session.to_dict()))
    assert data["transcript"][0]["latency_ms"] == {"handler_done": 1.5, "first_frame": 2.0}
    data["transcript"].append(
        {"role": "dp", "text": "x", "at": 1.0, "latency_ms": {f"s{i}": i for i in range(20)}}
    )
    data["transcript"].append({"role": "dp", "text": "y", "at": 1.0, "latency_ms": "fast"})
    again = Session.from_dict(data)
    first, many, bad = again.transcript
    assert first.latency_ms == {"handler_done": 1.5, "first_frame": 2.0}
    assert many.latency_ms is not None and len(many.latency_ms) == 8
    assert bad.latency_ms is None
    assert again.transcript_bytes == sum(t.cost for t in again.transcript)


def test_a_replys_latency_lands_on_its_own_line_when_later_lines_follow_it() -> None:
    """Recorded in two steps, after other lines were added: the reply's line gets both
    stages and keeps its words; the other lines are untouched."""
    session = Session(id="s", issuer="k", expires_at=2**31)
    session.add_turn("user", "hi")
    reply = session.add_turn("dp", "hello", fallback=True, timed=True)
    session.add_turn("user", "again")
    session.record_latency(reply, {"handler_done": 1.5})
    session.record_latency(reply, {"first_frame": 2.0})
    lines = session.to_dict()["transcript"]
    assert [line["text"] for line in lines] == ["hi", "hello", "again"]
    assert lines[1]["latency_ms"] == {"handler_done": 1.5, "first_frame": 2.0}
    assert lines[1]["fallback"] is True
    assert "latency_ms" not in lines[0] and "latency_ms" not in lines[2]
    assert session.transcript[1] == reply


def test_transcript_lines_leave_the_collectors_walks_and_read_back_as_turns() -> None:
    """Each line is kept as a tuple of plain values, which CPython stops tracking after
    one collection (so full passes over thousands of sessions do not walk them), and
    reads back as ``Turn`` copies: by index, slice, from either end."""
    session = Session(id="s", issuer="k", expires_at=2**31)
    session.add_turn("user", "hello")
    reply = session.add_turn("dp", "hi there", fallback=True, timed=True)
    session.record_latency(reply, {"handler_done": 0.5})
    gc.collect()
    assert session._transcript is not None
    assert not any(gc.is_tracked(entry) for entry in session._transcript)
    transcript = session.transcript
    assert len(transcript) == 2 and transcript.maxlen == DEFAULT_TRANSCRIPT_TURNS
    assert [turn.role for turn in reversed(transcript)] == ["dp", "user"]
    assert transcript[-1].latency_ms == {"handler_done": 0.5} and transcript[-1].fallback
    assert [turn.text for turn in transcript[:1]] == ["hello"]
    copy = transcript[0]
    copy.text = "changed"
    assert session.transcript[0].text == "hello"


def test_a_reply_latency_lands_on_its_entry_even_after_newer_lines() -> None:
    """The latency of a reply recorded after later lines (a user talking over it)
    goes onto that reply's entry, and not onto a line that left the transcript."""
    session = Session(id="s", issuer="k", expires_at=2**31)
    session.bound_transcript(turns=2, max_bytes=DEFAULT_TRANSCRIPT_MAX_BYTES)
    reply = session.add_turn("dp", "first", timed=True)
    session.add_turn("user", "again")
    session.record_latency(reply, {"first_frame": 3.0})
    assert [t.latency_ms for t in session.transcript] == [{"first_frame": 3.0}, None]
    gone = session.add_turn("dp", "second", timed=True)
    session.add_turn("user", "x")
    session.add_turn("user", "y")
    session.record_latency(gone, {"first_frame": 4.0})
    assert [t.latency_ms for t in session.transcript] == [None, None]
    assert gone.latency_ms == {"first_frame": 4.0}


def _filled(writer: VariableWriter, chunk: int = 4000) -> Session:
    """A session filled by ``writer`` until its next ``chunk`` would be refused."""
    session = _issued()
    prefix = "llm-" if writer is VariableWriter.MODEL else ""
    with pytest.raises(VariablesRefused):
        for n in range(1000):
            session.patch_variables({f"{prefix}v{n}": "x" * chunk}, writer)
    return session


@pytest.mark.parametrize(
    ("writer", "bound"),
    [
        (VariableWriter.BACKEND, 64 * 1024),
        (VariableWriter.UI, 48 * 1024),
        (VariableWriter.HANDLER, 48 * 1024),
        (VariableWriter.MODEL, 16 * 1024),
    ],
)
def test_every_writer_has_its_bound_and_a_refusal_changes_nothing(
    writer: VariableWriter, bound: int
) -> None:
    """One merge for every writer (issue 23): a change past the writer's bound is
    refused whole; what was kept is neither cut nor dropped."""
    session = _filled(writer)
    size = len(json.dumps(session.variables))
    assert bound - 4100 < size <= bound
    kept = dict(session.variables)
    new = "llm-new" if writer is VariableWriter.MODEL else "new"
    with pytest.raises(VariablesRefused) as refused:  # one removed, more added: it grows
        session.patch_variables({new: "x" * 9000, next(iter(kept)): None}, writer)
    assert refused.value.writer is writer
    assert session.variables == kept


def test_the_conversation_leaves_the_backend_its_quarter_and_removals_always_pass() -> None:
    session = _filled(VariableWriter.HANDLER)
    session.patch_variables({"backend": "y" * 12_000}, VariableWriter.BACKEND)
    assert len(json.dumps(session.variables)) <= MAX_VARIABLES_BYTES
    # Over the conversation's bound now: shrinking is allowed, growing is not.
    session.patch_variables({"v0": None}, VariableWriter.HANDLER)
    with pytest.raises(VariablesRefused):
        session.patch_variables({"v0": "x"}, VariableWriter.HANDLER)
    # A value that shrinks is not growth either.
    session.patch_variables({"v1": "short"}, VariableWriter.HANDLER)


def test_the_model_may_set_only_its_own_names() -> None:
    session = _issued()
    session.variables["plan"] = "gold"
    with pytest.raises(VariablesRefused, match="llm-"):
        session.patch_variables({"plan": "free"}, VariableWriter.MODEL)
    with pytest.raises(VariablesRefused):
        session.patch_variables({"plan": None}, VariableWriter.MODEL)
    session.patch_variables({"llm-plan": "free"}, VariableWriter.MODEL)
    assert session.variables == {"plan": "gold", "llm-plan": "free"}


def test_the_values_bound_counts_members_and_values() -> None:
    """Parsed, an empty object costs ~80 bytes: the values bound (768 for the
    conversation) stops a patch whose JSON is small."""
    session = _issued()
    with pytest.raises(VariablesRefused, match="768 values"):
        session.patch_variables({"many": [{} for _ in range(800)]}, VariableWriter.HANDLER)
    assert session.variables == {}


def test_a_replys_own_variables_are_bounded_too() -> None:
    check_reply_variables({"public-card": {"data": "x" * 40_000}})
    with pytest.raises(VariablesRefused):
        check_reply_variables({"public-card": {"data": "x" * 50_000}})
