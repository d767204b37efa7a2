"""The client's address and scheme behind a known number of reverse proxies.

Every proxy appends the address it received the request from to
``X-Forwarded-For``; whatever the client wrote itself stays on the left. So
with ``hops`` trusted proxies in front, the entry ``hops`` places from the
right is the address the outermost trusted proxy saw: the only one a client
cannot choose. (uvicorn's ``--forwarded-allow-ips='*'`` takes the leftmost
entry instead, which is the client's to write.) Platform routers such as
Heroku's append the peer like this, and their own addresses are not known in
advance, which is why this counts hops instead of listing proxy addresses.

The rewritten ``scope["client"]`` is what the rate limiter keys on, what the
loopback check for unauthenticated control sees, and what uvicorn's access log
prints (it reads the same scope), so all of them name the same address.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _address(entry: str) -> str | None:
    """The IP in one ``X-Forwarded-For`` entry (``ip``, ``ip:port``, ``[v6]:port``)."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None


def _pick(values: list[bytes], hops: int) -> str:
    """The entry ``hops`` from the right of the joined header values (the leftmost
    when there are fewer: every entry then came from a trusted proxy)."""
    entries = b",".join(values).decode("latin-1").split(",")
    return entries[-min(hops, len(entries))].strip()


class ForwardedHeadersMiddleware:
    """Take the client's address and scheme from ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` as written by ``hops`` trusted proxies."""

    def __init__(self, app: ASGIApp, *, hops: int) -> None:
        if hops < 1:
            raise ValueError("hops must be at least 1")
        self.app = app
        self.hops = hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            forwarded_for: list[bytes] = []
            forwarded_proto: bytes | None = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value)
                elif name == b"x-forwarded-proto":
                    forwarded_proto = value
            if forwarded_for:
                # An entry that is not an IP (none should be, from a proxy) leaves the peer.
                address = _address(_pick(forwarded_for, self.hops))
                if address is not None:
                    # In place: uvicorn's access log reads this same scope dict.
                    scope["client"] = (address, 0)
            if forwarded_proto is not None:
                proto = _pick([forwarded_proto], self.hops).lower()
                if proto in _SCHEMES:
                    if scope["type"] == "websocket":
                        proto = proto.replace("http", "ws")
                    scope["scheme"] = proto
        await self.app(scope, receive, send)
