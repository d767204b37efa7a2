"""The session record: lazily made transcript and event log, and its serialised form."""

from __future__ import annotations

import json
import sys

import pytest

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


@pytest.mark.parametrize("persona_id", [1, "1", "avatar-2"], ids=["int", "str", "name"])
def test_the_persona_id_keeps_its_type_through_the_stored_json(persona_id: int | str) -> None:
    """The persona id the DP used (int or string) survives to_dict -> JSON -> from_dict,
    as in the Redis store, so replies after a reload still send it with the DP's type."""
    session = _issued()
    session.persona_id = persona_id
    again = Session.from_dict(json.loads(json.dumps(session.to_dict())))
    assert again.persona_id == persona_id
    assert type(again.persona_id) is type(persona_id)


@pytest.mark.parametrize("stored", [None, True, 1.5, [1]])
def test_a_stored_persona_id_of_another_type_reads_as_the_default(stored: object) -> None:
    """A record whose persona_id is not an int or a string reads back as "1"."""
    data = _issued().to_dict()
    data["persona_id"] = stored
    assert Session.from_dict(data).persona_id == "1"
