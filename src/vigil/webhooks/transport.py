"""The HTTP side of a delivery: one POST over verified TLS to a vetted address, never redirected.

aiohttp, chosen by measurement (bench/RESULTS.md, NOTES.md: 50 concurrent HTTPS POSTs, httpx
0.3k/s against aiohttp 9.2k/s on this stack). Its connector asks our `VettingResolver` for the
addresses of every new connection: the name is resolved once, every answer is vetted against the
SSRF policy, and the connector connects only to what was returned, while TLS still verifies the
certificate for the URL's host name. There is no second lookup an attacker's DNS could answer
differently (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from vigil.core.errors import VigilError
from vigil.webhooks.resolver import Resolver
from vigil.webhooks.ssrf import AddressPolicy, Refusal, parse_ip_literal
from vigil.webhooks.trust import client_context, tls_failure
from vigil.webhooks.url_policy import WebhookUrl, parse_url

MAX_BODY_KEPT = 1024


class AddressRefused(OSError):
    """Raised inside the connector so no connection is ever opened to a refused address."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"address not allowed ({refusal.category})")
        self.refusal = refusal


class VettingResolver(AbstractResolver):
    def __init__(self, resolver: Resolver, policy: AddressPolicy) -> None:
        self._resolver, self._policy = resolver, policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.rstrip(".")
        literal = parse_ip_literal(name)
        if literal is not None:
            addresses = [literal]
        else:
            loop = asyncio.get_running_loop()
            addresses = await loop.run_in_executor(None, self._resolver.resolve, name, port)
        if not addresses:
            raise OSError(f"{name} does not resolve")
        refused = self._policy.vet(addresses)
        if refused is not None:
            raise AddressRefused(refused)
        return [
            ResolveResult(
                hostname=host,
                host=str(a),
                port=port,
                family=socket.AF_INET if a.version == 4 else socket.AF_INET6,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to. `reason` is the stable code audits carry on failure."""

    ok: bool
    status_code: int | None = None
    reason: str | None = None
    detail: str | None = None
    tls: str | None = None
    latency_ms: int = 0
    body: str | None = None
    retry_after: str | None = None


class Transport:
    """One shared connection pool per worker (connections are keyed by host, port and TLS
    context, so an endpoint's own CA context never serves another endpoint)."""

    def __init__(
        self,
        resolver: Resolver,
        policy: AddressPolicy,
        trust_store: Path | None,
        *,
        timeout: float = 15.0,
        limit: int = 64,
    ) -> None:
        self._policy, self._trust_store = policy, trust_store
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._resolver = VettingResolver(resolver, policy)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                use_dns_cache=False,
                limit=self._limit,
                ssl=client_context(self._trust_store),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
                headers={"user-agent": "Vigil-Webhooks/1"},
            )
        return self._session

    @property
    def timeout_seconds(self) -> float:
        return float(self._timeout.total or 0.0)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], ca_bundle: str | None
    ) -> Outcome:
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            parsed = _parsed(url)  # the policy may have changed since registration
        except VigilError as exc:
            return Outcome(False, reason="url_not_allowed", detail=exc.detail)
        if parsed.literal is not None:
            refused = self._policy.refusal(parsed.literal)
            if refused is not None:
                return Outcome(False, reason=refused.reason, detail=refused.category)
        context = client_context(self._trust_store, ca_bundle)
        try:
            async with self._client().post(
                url, data=body, headers=headers, ssl=context, allow_redirects=False
            ) as response:
                tls = _tls_of(response)  # before reading: a drained response frees its connection
                kept = await response.content.read(MAX_BODY_KEPT)
                status = response.status
                outcome = Outcome(
                    200 <= status < 300,
                    status_code=status,
                    reason=None if 200 <= status < 300 else _status_reason(status),
                    tls=tls,
                    latency_ms=took(),
                    body=kept.decode("utf-8", "replace"),
                    retry_after=response.headers.get("retry-after"),
                )
        except Exception as exc:
            return _failure(exc, took())
        return outcome


@lru_cache(maxsize=1024)
def _parsed(url: str) -> WebhookUrl:
    """`parse_url` depends on the URL alone: parsed once, not at every delivery (a URL it
    refuses raises each time, lru_cache keeps no exceptions). The address policy, which can
    change, is applied at every delivery."""
    return parse_url(url)


def _status_reason(status: int) -> str:
    if 300 <= status < 400:
        return "redirect_not_followed"
    return "gone" if status == 410 else "http_error"


def _tls_of(response: aiohttp.ClientResponse) -> str:
    """Protocol and cipher of the verified connection. A response without a body releases its
    connection at once, so this reads the protocol aiohttp keeps (falls back to "verified":
    a response only exists once verification succeeded)."""
    conn = response.connection
    protocol: Any = conn.protocol if conn is not None else getattr(response, "_protocol", None)
    transport = getattr(protocol, "transport", None)
    ssl_object: Any = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return "verified"
    return f"{ssl_object.version()} {ssl_object.cipher()[0]} verified"


def _failure(exc: Exception, latency_ms: int) -> Outcome:
    refused = _find(exc, AddressRefused)
    if isinstance(refused, AddressRefused):
        return Outcome(False, reason=refused.refusal.reason, detail=refused.refusal.category)
    tls = tls_failure(exc)
    if tls is not None:
        return Outcome(False, reason=tls[0], detail=tls[1], tls=f"failed: {tls[1]}")
    if isinstance(exc, asyncio.TimeoutError):
        return Outcome(False, reason="timeout", latency_ms=latency_ms)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Outcome(False, reason="dns_failed", detail=str(exc.os_error)[:200])
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Outcome(False, reason="connect_failed", detail=str(exc.os_error)[:200])
    return Outcome(False, reason="request_failed", detail=type(exc).__name__)


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        nested = getattr(current, "os_error", None)
        if isinstance(nested, kind):
            return nested
        current = current.__cause__ or current.__context__
    return None
