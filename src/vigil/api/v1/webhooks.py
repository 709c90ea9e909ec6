"""Webhook endpoints, their secrets, internal-CA requests, messages, attempts and replays
(`webhooks:read`, `webhooks:write`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.deps import services
from vigil.api.params import DEFAULT, Cursor, IfMatchHeader, Limit, ListPage, if_match, with_etag
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.times import Instant
from vigil.edge.authorization import requires
from vigil.events.types import EventType
from vigil.services import Services
from vigil.webhooks.endpoints import DEFAULT_OVERLAP, WithSecret
from vigil.webhooks.models import MessageStatus

router = APIRouter(tags=["webhooks"])
Svc = Annotated[Services, Depends(services)]
HooksRead = Annotated[Actor, Depends(requires(Scope.WEBHOOKS_READ))]
HooksWrite = Annotated[Actor, Depends(requires(Scope.WEBHOOKS_WRITE))]
Strict = ConfigDict(extra="forbid")
URL_FIELD = Field(min_length=8, max_length=2000, description="https:// only; no credentials")
BASE = "/v1/webhooks/endpoints"


class EndpointFields(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/vigil",
                    "event_types": ["alarm.created", "alarm.resolved"],
                    "description": "Dispatch board",
                }
            ]
        },
    )
    url: str = URL_FIELD
    event_types: list[EventType] = Field(
        default_factory=list, max_length=50, description="Empty: every type the app can read."
    )
    description: str | None = Field(default=None, max_length=500)
    enabled: bool = True


class EndpointPatch(BaseModel):
    model_config = Strict
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class EndpointOut(BaseModel):
    id: str
    app_id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    internal_ca: bool = Field(description="An administrator approved an internal CA for it.")
    secret_rotating_until: datetime | None
    failing_since: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_…), shown this once.")


class RotateRequest(BaseModel):
    model_config = Strict
    overlap_seconds: int = Field(
        default=int(DEFAULT_OVERLAP.total_seconds()),
        ge=0,
        le=7 * 24 * 3600,
        description="How long the old secret keeps signing alongside the new one.",
    )


class CaRequestIn(BaseModel):
    model_config = Strict
    ca_bundle: str = Field(min_length=1, max_length=65536, description="PEM CA certificate(s)")
    reason: str | None = Field(default=None, max_length=500)


class CaRequestOut(BaseModel):
    id: str
    endpoint_id: str
    fingerprints: list[str]
    reason: str | None
    status: str
    requested_by: str
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None


class ReplayRequest(BaseModel):
    model_config = Strict
    since: Instant = Field(description="Replay failed messages created at or after this.")


class ReplayOut(BaseModel):
    replayed: int


class MessageOut(BaseModel):
    id: str = Field(description="The webhook-id every attempt of this message carries.")
    endpoint_id: str
    event_id: str | None
    event_type: str
    status: MessageStatus
    attempts: int
    next_attempt_at: datetime | None
    exhausted: bool = Field(description="Every scheduled attempt failed; replay to try again.")
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime


class AttemptOut(BaseModel):
    id: str
    message_id: str
    endpoint_id: str
    attempt: int
    result: str
    reason: str | None = Field(description="Why it failed: certificate_verify_failed, …")
    status_code: int | None
    latency_ms: int | None
    tls: str | None = Field(description="Negotiated protocol and cipher, or the TLS failure.")
    response_body: str | None = Field(description="The first 1 KiB of the response body.")
    attempted_at: datetime


def _out(endpoint: object, response: Response) -> EndpointOut:
    out = EndpointOut.model_validate(endpoint, from_attributes=True)
    with_etag(response, out.version)
    return out


def _with_secret(created: WithSecret, response: Response) -> EndpointWithSecret:
    out = _out(created.endpoint, response)
    return EndpointWithSecret(**out.model_dump(), secret=created.secret.value)


@router.get(BASE, summary="List webhook endpoints, newest first")
def list_endpoints(
    actor: HooksRead, svc: Svc, limit: Limit = DEFAULT, cursor: Cursor = None
) -> ListPage[EndpointOut]:
    page = svc.webhooks.endpoints.list(actor, limit=limit, cursor=cursor)
    data = [EndpointOut.model_validate(e, from_attributes=True) for e in page.items]
    return ListPage[EndpointOut](data=data, next_cursor=page.next_cursor)


@router.post(BASE, status_code=201, summary="Register an endpoint (its secret is shown once)")
def create_endpoint(
    body: EndpointFields, actor: HooksWrite, svc: Svc, response: Response
) -> EndpointWithSecret:
    created = svc.webhooks.endpoints.create(
        actor,
        url=body.url,
        event_types=[t.value for t in body.event_types],
        description=body.description,
        enabled=body.enabled,
    )
    return _with_secret(created, response)


@router.get(BASE + "/{endpoint_id}", summary="Read one endpoint")
def get_endpoint(endpoint_id: str, actor: HooksRead, svc: Svc, response: Response) -> EndpointOut:
    return _out(svc.webhooks.endpoints.get(actor, endpoint_id), response)


@router.patch(BASE + "/{endpoint_id}", summary="Change an endpoint (If-Match honoured)")
def update_endpoint(
    endpoint_id: str,
    body: EndpointPatch,
    actor: HooksWrite,
    svc: Svc,
    response: Response,
    if_match_header: IfMatchHeader = None,
) -> EndpointOut:
    changes = body.model_dump(exclude_unset=True, mode="json")
    endpoint = svc.webhooks.endpoints.update(actor, endpoint_id, changes, if_match(if_match_header))
    return _out(endpoint, response)


@router.post(BASE + "/{endpoint_id}/rotate-secret", summary="New secret; the old one overlaps")
def rotate_secret(
    endpoint_id: str,
    actor: HooksWrite,
    svc: Svc,
    response: Response,
    body: RotateRequest | None = None,
) -> EndpointWithSecret:
    from datetime import timedelta

    overlap = timedelta(seconds=(body or RotateRequest()).overlap_seconds)
    return _with_secret(svc.webhooks.endpoints.rotate_secret(actor, endpoint_id, overlap), response)


@router.post(
    BASE + "/{endpoint_id}/ca-requests",
    status_code=201,
    summary="Ask a platform administrator to trust an internal CA for this endpoint",
)
def request_ca(endpoint_id: str, body: CaRequestIn, actor: HooksWrite, svc: Svc) -> CaRequestOut:
    request = svc.webhooks.endpoints.request_ca(actor, endpoint_id, body.ca_bundle, body.reason)
    return CaRequestOut.model_validate(request, from_attributes=True)


@router.post(BASE + "/{endpoint_id}/test", status_code=201, summary="Queue a webhook.test message")
def send_test(endpoint_id: str, actor: HooksWrite, svc: Svc) -> MessageOut:
    message = svc.webhooks.messages.send_test(actor, endpoint_id)
    return MessageOut.model_validate(message, from_attributes=True)


@router.post(BASE + "/{endpoint_id}/replay", summary="Replay every failed message since a time")
def replay_failed(endpoint_id: str, body: ReplayRequest, actor: HooksWrite, svc: Svc) -> ReplayOut:
    return ReplayOut(replayed=svc.webhooks.messages.replay_failed(actor, endpoint_id, body.since))


@router.get(BASE + "/{endpoint_id}/messages", summary="Messages to an endpoint, newest first")
def list_messages(
    endpoint_id: str,
    actor: HooksRead,
    svc: Svc,
    status: MessageStatus | None = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> ListPage[MessageOut]:
    page = svc.webhooks.messages.list(actor, endpoint_id, status=status, limit=limit, cursor=cursor)
    data = [MessageOut.model_validate(m, from_attributes=True) for m in page.items]
    return ListPage[MessageOut](data=data, next_cursor=page.next_cursor)


@router.get(BASE + "/{endpoint_id}/attempts", summary="Delivery attempts, newest first")
def list_attempts(
    endpoint_id: str,
    actor: HooksRead,
    svc: Svc,
    message_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> ListPage[AttemptOut]:
    page = svc.webhooks.messages.attempts(
        actor, endpoint_id, message_id=message_id, limit=limit, cursor=cursor
    )
    data = [AttemptOut.model_validate(a, from_attributes=True) for a in page.items]
    return ListPage[AttemptOut](data=data, next_cursor=page.next_cursor)


@router.post("/v1/webhooks/messages/{message_id}/replay", summary="Send one message again")
def replay_message(message_id: str, actor: HooksWrite, svc: Svc) -> MessageOut:
    message = svc.webhooks.messages.replay(actor, message_id)
    return MessageOut.model_validate(message, from_attributes=True)
