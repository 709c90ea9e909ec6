"""Name resolution for webhook deliveries, pluggable so tests can make a name resolve privately.

A delivery resolves a host name exactly once, vets every address, and connects only to a vetted
one (see `transport.py`), so what is checked is what is reached: no DNS-rebinding window.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Protocol

from vigil.webhooks.ssrf import IpAddress, parse_ip_literal


class Resolver(Protocol):
    def resolve(self, host: str, port: int) -> list[IpAddress]:
        """Every address `host` resolves to; an empty list when it does not resolve."""
        ...


class SystemResolver:
    def resolve(self, host: str, port: int) -> list[IpAddress]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return []
        found: list[IpAddress] = []
        for info in infos:
            address = parse_ip_literal(str(info[4][0]))
            if address is not None and address not in found:
                found.append(address)
        return found


class StaticHosts:
    """`name=address` answers given before DNS (VIGIL_WEBHOOK_STATIC_HOSTS, like curl --resolve);
    the answers are vetted like any other."""

    def __init__(self, pairs: Iterable[str], fallback: Resolver | None = None) -> None:
        self._table: dict[str, list[IpAddress]] = {}
        for pair in pairs:
            name, _, value = pair.partition("=")
            address = parse_ip_literal(value.strip())
            if not name.strip() or address is None:
                raise ValueError(f"'{pair}' is not name=address")
            self._table.setdefault(name.strip().lower().rstrip("."), []).append(address)
        self._fallback = fallback or SystemResolver()

    def resolve(self, host: str, port: int) -> list[IpAddress]:
        known = self._table.get(host.lower().rstrip("."))
        return list(known) if known is not None else self._fallback.resolve(host, port)
