"""Audit every request, whatever its outcome, before its response leaves (S14, S15).

The response start is held until the record for it is durable. If the record cannot be written,
the caller gets 503 instead of a response nobody could later account for. Unhandled errors
become a bare 500 problem document (no stack trace leaves the process) and are audited too.

`AuditGate` is that rule; the HTTPS edge (`edge/https.py`) and `AuditMiddleware` (the
plain-HTTP listener's) both apply it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.auth.principal import Principal
from vigil.core.clock import Clock
from vigil.edge.asgi import ASGIApp, Message, Receive, Scope, Send, header, state
from vigil.edge.problem import problem_body, send_problem

log = logging.getLogger(__name__)

Append = Callable[[AuditRecord], Awaitable[None]]

_ACTION_BY_STATUS = {
    401: AuditAction.AUTH_FAILED,
    403: AuditAction.ACCESS_DENIED,
    429: AuditAction.RATE_LIMITED,
}


def _action(status: int, error: object) -> AuditAction:
    if error == "https_required":
        return AuditAction.CLEARTEXT_REFUSED
    return _ACTION_BY_STATUS.get(status, AuditAction.API_REQUEST)


def _target(scope: Scope) -> tuple[str | None, str | None]:
    """The object a call is about: its first path parameter (`app_id` -> app)."""
    for name, value in scope.get("path_params", {}).items():
        return name.removesuffix("_id"), str(value)
    return None, None


def build_record(
    scope: Scope, status: int, now: datetime, user_agent: str | None = None
) -> AuditRecord:
    """The record of a request that ended with `status`. `user_agent` is the header's value."""
    st = state(scope)
    principal: Principal | None = st.get("principal")
    route = scope.get("route")
    target_type, target_id = _target(scope)
    error = st.get("error")
    details: dict[str, Any] = {}
    if error is not None:
        details["error"] = error if isinstance(error, str) else getattr(error, "code", "error")
    if route is None:
        # Refused before routing (401, 429, unknown paths, the plain-HTTP guard): keep the
        # path (never the query string, which may carry a credential) so the record says what
        # was attempted.
        details["path"] = str(scope.get("path", ""))[:200]
    if principal is None:
        return AuditRecord(
            occurred_at=now,
            action=_action(status, details.get("error")),
            result=str(status),
            actor_type="anonymous",
            scope=st.get("scope_used"),
            request_id=st.get("request_id"),
            source_ip=st.get("client_ip"),
            user_agent=user_agent[:300] if user_agent else None,
            method=scope.get("method"),
            route=getattr(route, "path", None),
            target_type=target_type,
            target_id=target_id,
            details=details,
        )
    return AuditRecord(
        occurred_at=now,
        action=_action(status, details.get("error")),
        result=str(status),
        actor_type=principal.actor_type.value,
        actor_id=principal.actor_id,
        dealer_id=principal.dealer_id,
        environment=principal.environment.value,
        app_id=principal.app_id,
        credential_id=principal.credential_id,
        scope=st.get("scope_used"),
        request_id=st.get("request_id"),
        source_ip=st.get("client_ip"),
        user_agent=user_agent[:300] if user_agent else None,
        method=scope.get("method"),
        route=getattr(route, "path", None),
        target_type=target_type,
        target_id=target_id,
        details=details,
    )


# The request-state key under which a handler says that the request's own record, for the
# response status stored there, already committed in the handler's transaction.
RECORDED = "audit_recorded"


def recorded_in_transaction(scope: Scope, record: AuditRecord) -> None:
    """Tell the edge that `record` — `build_record`'s record of this request, committed with
    the handler's own writes — is the request's record: the edge writes none for a response
    with that status. Call it only once the transaction holding the record has committed. Any
    other status (the handler failed afterwards) is still recorded by the edge."""
    state(scope)[RECORDED] = record.result


class AuditGate:
    """Commit a request's record, or answer 503 in place of the response it would have had."""

    def __init__(self, append: Append, clock: Clock) -> None:
        self.append = append
        self.clock = clock

    async def durable(self, scope: Scope, status: int, user_agent: str | None) -> bool:
        if state(scope).get(RECORDED) == str(status):
            return True  # committed beside the handler's writes (recorded_in_transaction)
        try:
            await self.append(build_record(scope, status, self.clock.now(), user_agent))
        except Exception:
            log.exception("audit record could not be committed; refusing to answer")
            return False
        return True

    async def unavailable(
        self, send: Send, request_id: str | None, headers: list[tuple[bytes, bytes]]
    ) -> None:
        body = problem_body(
            503,
            "Service unavailable",
            "The request could not be recorded in the audit log, so it was not answered.",
            "audit_unavailable",
            request_id,
        )
        await send_problem(send, 503, body, [(b"retry-after", b"5"), *headers])

    async def internal_error(
        self,
        scope: Scope,
        send: Send,
        user_agent: str | None,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """An unhandled error before any response started: a bare, audited 500."""
        log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
        st = state(scope)
        st["error"] = "internal_error"
        request_id = st.get("request_id")
        if not await self.durable(scope, 500, user_agent):
            await self.unavailable(send, request_id, headers)
            return
        body = problem_body(
            500,
            "Internal error",
            "Something went wrong on our side; quote the request id to support.",
            "internal_error",
            request_id,
        )
        await send_problem(send, 500, body, headers)


class AuditMiddleware:
    """The audit step as a middleware of its own (the plain-HTTP listener's stack)."""

    def __init__(self, app: ASGIApp, append: Append, clock: Clock) -> None:
        self.app = app
        self.gate = AuditGate(append, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        dropped = False
        agent = header(scope, b"user-agent")

        async def audited_send(message: Message) -> None:
            nonlocal started, dropped
            if dropped:
                return
            if message["type"] == "http.response.start":
                started = True
                if not await self.gate.durable(scope, message["status"], agent):
                    dropped = True
                    await self.gate.unavailable(send, state(scope).get("request_id"), [])
                    return
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if started:
                log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
                raise
            await self.gate.internal_error(scope, send, agent, [])
