"""The caller's address: the socket peer, unless that peer is a proxy we were told to trust.

`X-Forwarded-For` is believed only when it arrives from a configured trusted proxy, and then
read right to left, skipping further trusted proxies, so a client cannot prepend a fake address
to slip past an app's IP allow list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from vigil.edge.asgi import ASGIApp, Receive, Scope, Send, header, state

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def resolve_client_ip(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IpNetwork]
) -> str | None:
    if peer is None or forwarded_for is None or not trusted:
        return peer  # the common case, decided without parsing any address
    peer_addr = _parse(peer)
    if peer_addr is None:
        return peer

    def is_trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(addr in net for net in trusted)

    if not is_trusted(peer_addr):
        return peer
    hops = [h for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        addr = _parse(hop)
        if addr is None:
            return peer  # a garbled chain is not evidence of anything; fall back to the peer
        if not is_trusted(addr):
            return str(addr)
    return peer


class ClientIpMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[IpNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            peer = client[0] if client else None
            state(scope)["client_ip"] = resolve_client_ip(
                peer, header(scope, b"x-forwarded-for"), self.trusted
            )
        await self.app(scope, receive, send)
