"""The session record: lazily made transcript and event log, and its serialised form."""

from __future__ import annotations

import sys

from orchestrator.sessions import DEFAULT_TRANSCRIPT_TURNS, Session


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
