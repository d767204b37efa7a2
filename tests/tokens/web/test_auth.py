"""One reader of bearer credentials, one check of API keys."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from tokens.web.auth import ApiKeys, bearer_token, presented_token
from tokens.web.http import ApiError


def request(query: str = "", authorization: str | None = None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": query.encode(),
         "headers": headers}
    )  # fmt: skip


def test_the_bearer_header_is_read_with_any_scheme_case_and_spacing() -> None:
    """`bearer  abc ` reads as abc, from the header."""
    assert presented_token(request(authorization="bearer  abc ")) == ("abc", "bearer")


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Basic abc"])
def test_no_bearer_credential_reads_as_none(authorization: str | None) -> None:
    """A missing header, an empty credential or another scheme is no credential."""
    assert presented_token(request(authorization=authorization)) == (None, "")


def test_the_query_is_read_only_when_asked_and_then_first() -> None:
    """?access_token= wins over the header where a route takes it, and is ignored elsewhere."""
    both = request("access_token=from-query", "Bearer from-header")
    assert presented_token(both, query="access_token") == ("from-query", "query")
    assert presented_token(both) == ("from-header", "bearer")


def test_an_empty_query_value_falls_back_to_the_header() -> None:
    """?access_token= with nothing after it does not hide a bearer header."""
    empty = request("access_token=", "Bearer from-header")
    assert presented_token(empty, query="access_token") == ("from-header", "bearer")


def test_two_different_query_values_are_refused_as_malformed() -> None:
    """Neither of two different tokens is picked; the same one twice is fine."""
    with pytest.raises(ApiError) as refused:
        presented_token(request("access_token=a&access_token=b"), query="access_token")
    assert (refused.value.status, refused.value.code) == (400, "malformed")
    same = request("access_token=a&access_token=a")
    assert presented_token(same, query="access_token") == ("a", "query")


def test_bearer_token_refuses_a_request_without_one_with_a_challenge() -> None:
    """401 unauthorized, carrying WWW-Authenticate: Bearer."""
    with pytest.raises(ApiError) as refused:
        bearer_token(request())
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_api_keys_accept_any_listed_key_from_the_header_only() -> None:
    """Any of the keys matches as Bearer; the same key in the URL does not count."""
    keys = ApiKeys(["first-key", "second-key"])
    assert keys.in_header(request(authorization="Bearer second-key"))
    assert not keys.in_header(request("access_token=second-key"))
    assert not keys.in_header(request(authorization="Bearer other"))
    assert not ApiKeys([])


def test_api_keys_require_names_what_is_wrong() -> None:
    """No credential asks for one; a wrong one says the key is not valid; both 401."""
    keys = ApiKeys(["the-key"])
    keys.require(request(authorization="Bearer the-key"))
    for authorization, detail in ((None, "send Authorization"), ("Bearer x", "not valid")):
        with pytest.raises(ApiError) as refused:
            keys.require(request(authorization=authorization))
        assert refused.value.status == 401
        assert detail in refused.value.detail


def test_a_non_ascii_credential_is_compared_not_crashed_on() -> None:
    """Latin-1 header bytes decode to non-ASCII text; the comparison is on bytes."""
    raw = Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": b"",
         "headers": [(b"authorization", b"Bearer \xe9t\xe9")]}
    )  # fmt: skip
    assert not ApiKeys(["the-key"]).in_header(raw)
