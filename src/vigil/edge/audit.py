"""Audit every request, whatever its outcome, before its response leaves (S14, S15).

The response start is held until the record for it is durable. If the record cannot be written,
the caller gets 503 instead of a response nobody could later account for. Unhandled errors
become a bare 500 problem document here (no stack trace leaves the process) and are audited too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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


def build_record(scope: Scope, status: int, now: Any) -> AuditRecord:
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
    agent = header(scope, b"user-agent")
    return AuditRecord(
        occurred_at=now,
        action=_action(status, details.get("error")),
        result=str(status),
        actor_type=principal.actor_type.value if principal else "anonymous",
        actor_id=principal.actor_id if principal else None,
        dealer_id=principal.dealer_id if principal else None,
        environment=principal.environment.value if principal else None,
        app_id=principal.app_id if principal else None,
        credential_id=principal.credential_id if principal else None,
        scope=st.get("scope_used"),
        request_id=st.get("request_id"),
        source_ip=st.get("client_ip"),
        user_agent=agent[:300] if agent else None,
        method=scope.get("method"),
        route=getattr(route, "path", None),
        target_type=target_type,
        target_id=target_id,
        details=details,
    )


class AuditMiddleware:
    def __init__(self, app: ASGIApp, append: Append, clock: Clock) -> None:
        self.app = app
        self.append = append
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        dropped = False

        async def audited_send(message: Message) -> None:
            nonlocal started, dropped
            if dropped:
                return
            if message["type"] == "http.response.start":
                started = True
                if not await self._durable(scope, message["status"]):
                    dropped = True
                    await self._unavailable(scope, send)
                    return
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            state(scope)["error"] = "internal_error"
            if await self._durable(scope, 500):
                body = problem_body(
                    500,
                    "Internal error",
                    "Something went wrong on our side; quote the request id to support.",
                    "internal_error",
                    state(scope).get("request_id"),
                )
                await send_problem(send, 500, body)
            else:
                await self._unavailable(scope, send)

    async def _durable(self, scope: Scope, status: int) -> bool:
        try:
            await self.append(build_record(scope, status, self.clock.now()))
        except Exception:
            log.exception("audit record could not be committed; refusing to answer")
            return False
        return True

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        body = problem_body(
            503,
            "Service unavailable",
            "The request could not be recorded in the audit log, so it was not answered.",
            "audit_unavailable",
            state(scope).get("request_id"),
        )
        await send_problem(send, 503, body, [(b"retry-after", b"5")])
