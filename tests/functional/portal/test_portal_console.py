"""The alarm console, devices and telemetry chart in the portal, over real TLS (issue 8).

Operators work alarms through the same alarm service as the API: the queue shows open alarms
most urgent first, each action is a CSRF-checked form that lands on the alarm's timeline and in
the audit log under the operator's id, illegal steps answer with the state machine's words (not
a 500), a viewer sees but cannot act, and another dealer's ids are 404s.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import event, select
from tests.support import factories
from tests.support.portal import Operator, csrf_of, operator, sign_in
from tests.support.server import VigilServer

from vigil.audit.query import AuditFilter, list_events
from vigil.auth.actor import Actor, Tenant
from vigil.auth.principal import Environment
from vigil.monitoring.alarm_models import AlarmType, NewAlarm, ResolutionCode
from vigil.monitoring.alarm_states import AlarmStatus
from vigil.portal.views.static import HTMX, HTMX_INTEGRITY
from vigil.services import Services
from vigil.storage.tables import alarms
from vigil.tenancy.roles import PortalRole

JPEG = b"\xff\xd8\xff\xe0 portal snapshot " + bytes(range(256)) * 64


@dataclass(frozen=True)
class World:
    app: Actor
    tenant: Tenant
    operator: Operator
    viewer: Operator
    site_id: str
    other_site_id: str
    camera_id: str
    silent_id: str
    snapshot_id: str
    foreign_alarm_id: str
    foreign_device_id: str
    foreign_snapshot_id: str


def raise_alarm(
    services: Services, actor: Actor, site_id: str, kind: AlarmType, **extra: object
) -> str:
    new = NewAlarm(site_id, kind, services.clock.now(), **extra)  # type: ignore[arg-type]
    return services.alarms.create(actor, new).id


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    mine, theirs = factories.dealer(services), factories.dealer(services)
    cred = factories.credential(services, owner=mine, environment=Environment.PRODUCTION)
    app = factories.actor_of(services, cred)
    site_id = services.sites.create(app, {"name": "Harbour Warehouse"}).id
    other_site_id = services.sites.create(app, {"name": "Canal Offices"}).id
    camera = services.devices.create(
        app,
        {
            "site_id": site_id,
            "kind": "camera",
            "serial": "CAM-PORTAL-1",
            "name": "Loading bay camera",
            "firmware_version": "4.2.1",
        },
    ).id
    snapshot = services.snapshots.create(
        app, camera, [JPEG[:1000], JPEG[1000:]], content_type="image/jpeg"
    ).id
    now = services.clock.now()
    readings = [
        {
            "metric": "temperature.c",
            "value": 20.0 + (n % 7) / 2,
            "timestamp": now - timedelta(minutes=5 * n),
        }
        for n in range(60)
    ]
    readings.append({"metric": "heartbeat", "value": 1.0, "timestamp": now})
    services.telemetry.ingest(app, camera, readings)  # type: ignore[arg-type]
    silent = {"site_id": site_id, "kind": "sensor", "serial": "PIR-PORTAL-1", "name": "Silent PIR"}
    silent_id = services.devices.create(app, silent).id

    other = factories.credential(services, owner=theirs, environment=Environment.PRODUCTION)
    their_app = factories.actor_of(services, other)
    their_site = factories.site(services, their_app)
    their_camera = factories.camera(services, their_app, their_site)
    return World(
        app=app,
        tenant=factories.tenant_of(cred),
        operator=operator(services, mine.id, PortalRole.OPERATOR),
        viewer=operator(services, mine.id, PortalRole.VIEWER),
        site_id=site_id,
        other_site_id=other_site_id,
        camera_id=camera,
        silent_id=silent_id,
        snapshot_id=snapshot,
        foreign_alarm_id=factories.alarm(services, their_app, their_site),
        foreign_device_id=their_camera,
        foreign_snapshot_id=factories.snapshot(services, their_app, their_camera),
    )


@pytest.fixture(scope="module")
def op_client(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    with server.client() as c:
        sign_in(c, world.operator)
        yield c


@pytest.fixture(scope="module")
def viewer_client(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    with server.client() as c:
        sign_in(c, world.viewer)
        yield c


def form_of(client: httpx.Client, alarm_id: str, **fields: str) -> dict[str, str]:
    """The hidden fields of the alarm page's forms (CSRF token, version) plus `fields`."""
    page = client.get(f"/portal/alarms/{alarm_id}").text
    version = re.search(r'name="version" value="(\d+)"', page)
    assert version is not None, "no action form on the alarm's page"
    return {"csrf": csrf_of(page), "version": version.group(1)} | fields


def status_of(services: Services, world: World, alarm_id: str) -> AlarmStatus:
    return services.alarms.get(world.app, alarm_id).status


def queue_ids(html: str) -> list[str]:
    return re.findall(r'href="/portal/alarms/(alarm_[A-Za-z0-9]+)"', html)


def test_queue_shows_open_alarms_most_urgent_first_then_oldest(
    op_client: httpx.Client, services: Services, world: World
) -> None:
    old_trouble = raise_alarm(services, world.app, world.other_site_id, AlarmType.TROUBLE)
    burglary = raise_alarm(services, world.app, world.site_id, AlarmType.BURGLARY)
    fire = raise_alarm(services, world.app, world.other_site_id, AlarmType.FIRE)
    later_burglary = raise_alarm(services, world.app, world.site_id, AlarmType.BURGLARY)
    closed = raise_alarm(services, world.app, world.site_id, AlarmType.FIRE)
    services.alarms.resolve(world.app, closed, ResolutionCode.TEST)

    page = op_client.get("/portal/alarms")
    assert page.status_code == 200
    ids = queue_ids(page.text)
    mine = [i for i in ids if i in {old_trouble, burglary, fire, later_burglary}]
    assert mine == [fire, burglary, later_burglary, old_trouble]
    assert closed not in ids
    assert "Harbour Warehouse" in page.text

    by_site = queue_ids(op_client.get(f"/portal/alarms?site={world.other_site_id}").text)
    assert fire in by_site
    assert old_trouble in by_site
    assert burglary not in by_site
    services.alarms.acknowledge(world.app, burglary)
    acknowledged = queue_ids(op_client.get("/portal/alarms?status=acknowledged").text)
    assert burglary in acknowledged
    assert fire not in acknowledged


def test_queue_fragment_is_only_the_table_and_refreshes_itself(
    op_client: httpx.Client, services: Services, world: World
) -> None:
    alarm = raise_alarm(services, world.app, world.site_id, AlarmType.PANIC)
    fragment = op_client.get("/portal/alarms/queue?status=new", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert "<nav" not in fragment.text
    assert fragment.text.lstrip().startswith('<div id="queue"')
    assert 'hx-get="/portal/alarms/queue?status=new"' in fragment.text
    assert 'hx-trigger="every 5s"' in fragment.text
    assert alarm in queue_ids(fragment.text)
    assert fragment.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_refresh_after_the_session_ended_sends_htmx_to_sign_in(server: VigilServer) -> None:
    with server.client() as anonymous:
        refresh = anonymous.get("/portal/alarms/queue", headers={"HX-Request": "true"})
        assert refresh.status_code == 401
        assert refresh.headers["hx-redirect"] == "/portal/sign-in"
        assert "queue" not in refresh.text
        page = anonymous.get("/portal/alarms")  # a browser without htmx: the usual redirect
        assert page.status_code == 303
        assert page.headers["location"] == "/portal/sign-in?next=/portal/alarms"


def test_htmx_is_vendored_with_sri_and_a_long_cache(op_client: httpx.Client) -> None:
    page = op_client.get("/portal/alarms").text
    tag = f'<script src="/portal/static/{HTMX}" integrity="{HTMX_INTEGRITY}"'
    assert tag in page
    served = op_client.get(f"/portal/static/{HTMX}")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    digest = base64.b64encode(hashlib.sha384(served.content).digest()).decode()
    assert f"sha384-{digest}" == HTMX_INTEGRITY
    assert "unsafe-eval" not in served.headers["content-security-policy"]
    assert '"allowEval":false' in page
    assert '"allowScriptTags":false' in page
    assert '"includeIndicatorStyles":false' in page


def test_operator_works_an_alarm_through_its_states_audited_as_themselves(
    op_client: httpx.Client, services: Services, world: World
) -> None:
    alarm = raise_alarm(services, world.app, world.site_id, AlarmType.BURGLARY)
    steps = [
        ("acknowledge", {"note": "Watching the camera"}, AlarmStatus.ACKNOWLEDGED),
        ("annotate", {"note": "Keyholder called: not on site"}, AlarmStatus.ACKNOWLEDGED),
        ("dispatch", {"agency": "Harbour police"}, AlarmStatus.DISPATCHED),
        ("resolve", {"resolution_code": "confirmed_intrusion"}, AlarmStatus.RESOLVED),
    ]
    for action, fields, expected in steps:
        answer = op_client.post(
            f"/portal/alarms/{alarm}/{action}", data=form_of(op_client, alarm, **fields)
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"/portal/alarms/{alarm}"
        assert status_of(services, world, alarm) is expected

    page = op_client.get(f"/portal/alarms/{alarm}").text
    for text in ("acknowledged", "annotated", "dispatched", "resolved", "Harbour police",
                 "Keyholder called: not on site", "confirmed intrusion"):  # fmt: skip
        assert text in page
    assert f"operator:{world.operator.user_id}" in page
    records, _ = list_events(
        services.db,
        world.tenant,
        AuditFilter(actor_id=world.operator.user_id),
        200,
        None,
        services.audit.details,
    )
    done = {r["action"]: r for r in records if r["target_id"] == alarm}
    for action in ("alarm.acknowledged", "alarm.annotated", "alarm.dispatched", "alarm.resolved"):
        assert done[action]["actor_type"] == "operator"
        assert done[action]["details"]["via"] == "portal"
    timeline = services.alarms.timeline(world.app, alarm).items
    assert [e.actor_id for e in timeline[1:]] == [world.operator.user_id] * 4


def test_an_illegal_step_is_explained_not_a_500(
    op_client: httpx.Client, services: Services, world: World
) -> None:
    alarm = raise_alarm(services, world.app, world.site_id, AlarmType.TAMPER)
    # Dispatch is not offered for a new alarm; a forged (or outdated) form gets the rule back.
    answer = op_client.post(f"/portal/alarms/{alarm}/dispatch", data=form_of(op_client, alarm))
    assert answer.status_code == 409
    assert "Cannot dispatch an alarm that is new" in answer.text
    assert 'role="alert"' in answer.text
    assert status_of(services, world, alarm) is AlarmStatus.NEW

    stale = form_of(op_client, alarm)
    services.alarms.annotate(world.app, alarm, "another operator's note")
    answer = op_client.post(f"/portal/alarms/{alarm}/acknowledge", data=stale)
    assert answer.status_code == 412
    assert "Someone changed this alarm after you opened it" in answer.text
    assert status_of(services, world, alarm) is AlarmStatus.NEW

    answer = op_client.post(
        f"/portal/alarms/{alarm}/resolve", data=form_of(op_client, alarm, resolution_code="other")
    )
    assert answer.status_code == 422
    assert "needs a note" in answer.text
    answer = op_client.post(
        f"/portal/alarms/{alarm}/resolve", data=form_of(op_client, alarm, resolution_code="bogus")
    )
    assert answer.status_code == 422
    assert status_of(services, world, alarm) is AlarmStatus.NEW


def test_viewer_sees_the_queue_and_alarm_but_no_action_and_cannot_act(
    viewer_client: httpx.Client, op_client: httpx.Client, services: Services, world: World
) -> None:
    alarm = raise_alarm(services, world.app, world.site_id, AlarmType.BURGLARY)
    queue = viewer_client.get("/portal/alarms")
    assert queue.status_code == 200
    assert alarm in queue_ids(queue.text)
    assert "/acknowledge" not in queue.text
    detail = viewer_client.get(f"/portal/alarms/{alarm}")
    assert detail.status_code == 200
    assert '<form method="post" action="/portal/alarms/' not in detail.text

    csrf = csrf_of(viewer_client.get("/portal/account").text)
    for action in ("acknowledge", "annotate", "dispatch", "resolve"):
        answer = viewer_client.post(
            f"/portal/alarms/{alarm}/{action}",
            data={"csrf": csrf, "note": "x", "resolution_code": "test", "version": "1"},
        )
        assert answer.status_code == 403, action
    assert status_of(services, world, alarm) is AlarmStatus.NEW

    # The operator (alarms:dispatch) is offered dispatch once the alarm is acknowledged.
    services.alarms.acknowledge(world.app, alarm)
    assert (
        'action="/portal/alarms/' + alarm + '/dispatch"'
        in op_client.get(f"/portal/alarms/{alarm}").text
    )
    assert "/dispatch" not in viewer_client.get(f"/portal/alarms/{alarm}").text


def test_actions_without_the_sessions_csrf_token_are_refused(
    op_client: httpx.Client, services: Services, world: World
) -> None:
    alarm = raise_alarm(services, world.app, world.site_id, AlarmType.BURGLARY)
    good = form_of(op_client, alarm)
    for fields in ({"version": good["version"]}, good | {"csrf": "forged" + good["csrf"][6:]}):
        answer = op_client.post(f"/portal/alarms/{alarm}/acknowledge", data=fields)
        assert answer.status_code == 403
    assert status_of(services, world, alarm) is AlarmStatus.NEW
    answer = op_client.post(f"/portal/alarms/{alarm}/acknowledge", data=good)
    assert answer.status_code == 303
    assert status_of(services, world, alarm) is AlarmStatus.ACKNOWLEDGED


def test_another_dealers_alarm_device_and_snapshot_are_404(
    op_client: httpx.Client, world: World, services: Services
) -> None:
    csrf = csrf_of(op_client.get("/portal/account").text)
    for path in (
        f"/portal/alarms/{world.foreign_alarm_id}",
        f"/portal/devices/{world.foreign_device_id}",
        f"/portal/snapshots/{world.foreign_snapshot_id}",
        "/portal/alarms/not%00an-id",
    ):
        answer = op_client.get(path)
        assert answer.status_code == 404, path
        assert "<html" in answer.text  # the portal's page, not a problem document
    answer = op_client.post(
        f"/portal/alarms/{world.foreign_alarm_id}/acknowledge", data={"csrf": csrf}
    )
    assert answer.status_code == 404
    with services.db.read() as conn:
        row = conn.execute(
            select(alarms.c.status).where(alarms.c.id == world.foreign_alarm_id)
        ).scalar_one()
    assert row == "new"


def test_snapshot_is_streamed_through_the_portal_with_safe_headers(
    viewer_client: httpx.Client, services: Services, world: World
) -> None:
    alarm = raise_alarm(
        services, world.app, world.site_id, AlarmType.BURGLARY, snapshot_ids=(world.snapshot_id,)
    )
    page = viewer_client.get(f"/portal/alarms/{alarm}").text
    assert f'<img src="/portal/snapshots/{world.snapshot_id}"' in page
    answer = viewer_client.get(f"/portal/snapshots/{world.snapshot_id}")
    assert answer.status_code == 200
    assert answer.content == JPEG
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"] == f'inline; filename="{world.snapshot_id}.jpg"'
    assert answer.headers["content-length"] == str(len(JPEG))
    assert "no-store" in answer.headers["cache-control"]


def test_devices_list_detail_and_telemetry_chart(viewer_client: httpx.Client, world: World) -> None:
    listing = viewer_client.get("/portal/devices")
    assert listing.status_code == 200
    assert f'href="/portal/devices/{world.camera_id}"' in listing.text
    assert world.foreign_device_id not in listing.text
    offline = viewer_client.get("/portal/devices?status=offline").text
    assert world.silent_id in offline  # never heard from
    assert world.camera_id not in offline  # its heartbeat brought it online

    site = viewer_client.get(f"/portal/sites/{world.site_id}").text
    assert "Loading bay camera" in site
    assert "Silent PIR" in site

    detail = viewer_client.get(f"/portal/devices/{world.camera_id}?metric=temperature.c&range=6h")
    assert detail.status_code == 200
    text = detail.text
    assert "4.2.1" in text
    assert "Last seen" in text
    assert "status-online" in text
    assert '<option value="heartbeat"' in text  # the metric picker lists what it reported
    assert '<svg class="chart"' in text
    assert 'role="img"' in text
    assert '<title id="chart-title">temperature.c on Loading bay camera</title>' in text
    assert '<path class="avg" d="M' in text
    assert '<path class="band" d="M' in text
    rows = re.findall(r"<tr><td class=\"mono\">\d{4}-\d\d-\d\d \d\d:\d\d</td>", text)
    assert 50 <= len(rows) <= 73  # 5-minute buckets over 6 hours; readings span 5 hours
    assert "style=" not in text
    assert "<script>" not in text

    unknown = viewer_client.get(f"/portal/devices/{world.camera_id}?metric=nope&range=bogus")
    assert unknown.status_code == 200
    # An unknown metric falls back to the first measured one (heartbeats are all 1s).
    assert "temperature.c on Loading bay camera" in unknown.text
    assert '<option value="24h" selected>' in unknown.text
    silent = viewer_client.get(f"/portal/devices/{world.silent_id}").text
    assert "has sent no telemetry yet" in silent
    assert "never" in silent


def test_dashboard_shows_open_alarms_by_priority_and_offline_devices(
    op_client: httpx.Client, services: Services, world: World
) -> None:
    raise_alarm(services, world.app, world.site_id, AlarmType.FIRE)
    page = op_client.get("/portal/").text
    assert "Open alarms" in page
    assert ">P1<" in page
    assert "Offline devices" in page
    assert "Silent PIR" in page
    assert "Webhook health" in page  # the operator role reads webhooks


def test_the_queue_is_one_query_however_long_it_is(services: Services, world: World) -> None:
    statements: list[str] = []

    def seen(*args: object) -> None:
        statement = str(args[2])
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    def queue_queries() -> int:
        statements.clear()
        event.listen(services.db.engine, "before_cursor_execute", seen)
        try:
            rows = services.alarms.queue(world.app)
        finally:
            event.remove(services.db.engine, "before_cursor_execute", seen)
        assert rows
        return len(statements)

    before = queue_queries()
    for _ in range(30):
        raise_alarm(services, world.app, world.other_site_id, AlarmType.TAMPER)
    assert before == 1
    assert queue_queries() == 1
