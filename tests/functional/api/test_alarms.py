"""Alarms over the real server: raise, read, list and filter, work through the state machine
with If-Match, timelines, outbox events and audit records; two operators acknowledging at once
get one 200 and one 412."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.scopes import Scope
from vigil.events.outbox import events_for
from vigil.services import Services

WHEN = "2026-11-27T22:14:05Z"
BURGLARY = {"type": "burglary", "occurred_at": WHEN}
PROBLEM = "application/problem+json"


def _site(client: httpx.Client) -> str:
    response = client.post("/v1/sites", json={"name": "Warehouse 7"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _raise(client: httpx.Client, site_id: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/alarms", json=BURGLARY | {"site_id": site_id} | fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _events(services: Services, cred: factories.Credential, alarm_id: str) -> list[str]:
    with services.db.read() as conn:
        return [e["type"] for e in events_for(conn, factories.tenant_of(cred), alarm_id)]


def test_raised_alarm_reads_back_new_with_its_event_and_timeline(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site_id = _site(client)
        device_id = factories.camera(services, factories.actor_of(services, cred), site_id)
        snapshot_id = factories.snapshot(services, factories.actor_of(services, cred), device_id)
        created = client.post(
            "/v1/alarms",
            json=BURGLARY
            | {
                "site_id": site_id,
                "device_id": device_id,
                "zone": "Zone 4",
                "snapshot_ids": [snapshot_id],
                "verification_requested": True,
            },
        )
        alarm = created.json()
        read = client.get(f"/v1/alarms/{alarm['id']}")
        timeline = client.get(f"/v1/alarms/{alarm['id']}/timeline").json()["data"]
        fire = _raise(client, site_id, type="fire")
    assert created.status_code == 201
    assert created.headers["etag"] == '"v1"'
    assert read.json() == alarm
    assert read.headers["etag"] == '"v1"'
    assert alarm["status"] == "new"
    assert alarm["priority"] == 2
    assert fire["priority"] == 1
    assert alarm["snapshot_ids"] == [snapshot_id]
    assert alarm["occurred_at"].startswith("2026-11-27T22:14:05")
    assert [(t["action"], t["actor_id"]) for t in timeline] == [("created", cred.app.id)]
    assert _events(services, cred, alarm["id"]) == ["alarm.created", "verification.requested"]
    assert _events(services, cred, fire["id"]) == ["alarm.created"]


def test_bad_alarm_input_is_a_problem_not_a_crash(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    stranger = factories.credential(services)
    with server.client(stranger.token) as client:
        foreign_site = _site(client)
    foreign_device = factories.camera(
        services, factories.actor_of(services, stranger), foreign_site
    )
    with server.client(cred.token) as client:
        site_id, other_site = _site(client), _site(client)
        device_elsewhere = factories.camera(
            services, factories.actor_of(services, cred), other_site
        )
        snapshot_elsewhere = factories.snapshot(
            services, factories.actor_of(services, cred), device_elsewhere
        )
        body = BURGLARY | {"site_id": site_id}
        unprocessable = [
            client.post("/v1/alarms", json=body | {"occurred_at": "2026-11-27T22:14:05"}),
            client.post("/v1/alarms", json={"site_id": site_id, "type": "burglary"}),
            client.post("/v1/alarms", json=body | {"occurred_at": "0001-01-01T00:00:00+01:00"}),
            client.post("/v1/alarms", json=body | {"type": "flood"}),
            client.post("/v1/alarms", json=body | {"colour": "red"}),
            client.post("/v1/alarms", json=body | {"priority": 0}),
            client.post("/v1/alarms", json=body | {"priority": 6}),
            client.post("/v1/alarms", json=body | {"description": "x" * 2001}),
            client.post("/v1/alarms", json=body | {"snapshot_ids": [f"s{i}" for i in range(21)]}),
            client.post("/v1/alarms", json=body | {"snapshot_ids": ["snap_nope"]}),
            client.post("/v1/alarms", json=body | {"snapshot_ids": [snapshot_elsewhere]}),
            client.post("/v1/alarms", json=body | {"device_id": device_elsewhere}),
        ]
        not_found = [
            client.post("/v1/alarms", json=body | {"site_id": foreign_site}),
            client.post("/v1/alarms", json=body | {"device_id": foreign_device}),
            client.get("/v1/alarms/alarm_doesnotexist"),
        ]
        listed = client.get("/v1/alarms").json()["data"]
    assert [r.status_code for r in unprocessable] == [422] * len(unprocessable)
    assert [r.status_code for r in not_found] == [404] * len(not_found)
    assert unprocessable[9].json()["snapshot_ids"] == ["snap_nope"]
    for response in unprocessable + not_found:
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["request_id"] == response.headers["x-request-id"]
    assert listed == []


def test_alarm_is_worked_from_new_to_resolved(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        alarm = _raise(client, _site(client))
        url = f"/v1/alarms/{alarm['id']}"
        acked = client.post(f"{url}/acknowledge", json={"note": "watching"})
        noted = client.post(f"{url}/annotate", json={"note": "keyholder on the way"})
        sent = client.post(f"{url}/dispatch", json={"agency": "police", "note": "ref 4471"})
        closed = client.post(f"{url}/resolve", json={"resolution_code": "confirmed_intrusion"})
        timeline = client.get(f"{url}/timeline").json()["data"]
    assert [r.status_code for r in (acked, noted, sent, closed)] == [200] * 4
    assert [r.json()["status"] for r in (acked, noted, sent, closed)] == [
        "acknowledged",
        "acknowledged",
        "dispatched",
        "resolved",
    ]
    assert [r.headers["etag"] for r in (acked, noted, sent, closed)] == [
        '"v2"',
        '"v3"',
        '"v4"',
        '"v5"',
    ]
    assert closed.json()["resolution_code"] == "confirmed_intrusion"
    assert [(t["action"], t["note"]) for t in timeline] == [
        ("created", None),
        ("acknowledged", "watching"),
        ("annotated", "keyholder on the way"),
        ("dispatched", "ref 4471"),
        ("resolved", None),
    ]
    assert timeline[3]["details"] == {
        "from": "acknowledged",
        "to": "dispatched",
        "agency": "police",
    }
    assert {t["actor_id"] for t in timeline} == {cred.app.id}
    assert _events(services, cred, alarm["id"]) == [
        "alarm.created",
        "alarm.acknowledged",
        "alarm.dispatched",
        "alarm.resolved",
    ]


def test_illegal_transitions_are_409_naming_the_status(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        alarm = _raise(client, _site(client))
        url = f"/v1/alarms/{alarm['id']}"
        early_dispatch = client.post(f"{url}/dispatch", json={"agency": "police"})
        client.post(f"{url}/resolve", json={"resolution_code": "false_alarm"})
        late_ack = client.post(f"{url}/acknowledge")
        again = client.post(f"{url}/resolve", json={"resolution_code": "test"})
        late_note = client.post(f"{url}/annotate", json={"note": "customer confirmed: cat"})
        timeline = client.get(f"{url}/timeline").json()["data"]
    for refused, status in ((early_dispatch, "new"), (late_ack, "resolved"), (again, "resolved")):
        assert refused.status_code == 409
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["alarm_status"] == status
        assert f"is {status}" in refused.json()["detail"]
    assert late_note.status_code == 200
    assert [t["action"] for t in timeline] == ["created", "resolved", "annotated"]
    assert _events(services, cred, alarm["id"]) == ["alarm.created", "alarm.resolved"]


def test_dispatch_needs_the_dispatch_scope(server: VigilServer, services: Services) -> None:
    cred = factories.credential(
        services, scopes={Scope.SITES_WRITE, Scope.ALARMS_READ, Scope.ALARMS_WRITE}
    )
    with server.client(cred.token) as client:
        alarm = _raise(client, _site(client))
        url = f"/v1/alarms/{alarm['id']}"
        client.post(f"{url}/acknowledge")
        refused = client.post(f"{url}/dispatch", json={"agency": "police"})
        after = client.get(url).json()
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    assert refused.json()["scope"] == "alarms:dispatch"
    assert after["status"] == "acknowledged"


def test_resolving_needs_a_known_code_and_other_needs_a_note(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        alarm = _raise(client, _site(client))
        url = f"/v1/alarms/{alarm['id']}/resolve"
        missing = client.post(url, json={})
        unknown = client.post(url, json={"resolution_code": "bored"})
        bare_other = client.post(url, json={"resolution_code": "other"})
        empty_note = client.post(f"/v1/alarms/{alarm['id']}/annotate", json={"note": ""})
        other = client.post(url, json={"resolution_code": "other", "note": "power cut"})
    assert [r.status_code for r in (missing, unknown, bare_other, empty_note)] == [422] * 4
    assert "note" in bare_other.json()["detail"]
    assert other.status_code == 200
    assert other.json()["resolution_code"] == "other"


def test_stale_if_match_is_412_and_a_note_moves_the_etag(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        alarm = _raise(client, _site(client))
        url = f"/v1/alarms/{alarm['id']}"
        noted = client.post(f"{url}/annotate", json={"note": "police already on site"})
        seen_before_note = client.post(f"{url}/acknowledge", headers={"If-Match": '"v1"'})
        current = client.post(f"{url}/acknowledge", headers={"If-Match": noted.headers["etag"]})
        stale_and_illegal = client.post(f"{url}/acknowledge", headers={"If-Match": '"v2"'})
        garbage = client.post(f"{url}/annotate", json={"note": "x"}, headers={"If-Match": "v3"})
    assert noted.headers["etag"] == '"v2"'
    assert noted.json()["status"] == "new"
    assert seen_before_note.status_code == 412
    assert seen_before_note.json()["current_etag"] == '"v2"'
    assert current.status_code == 200
    # The precondition is judged first: the loser of a race hears 412, not 409.
    assert stale_and_illegal.status_code == 412
    assert garbage.status_code == 422


def _at_once(clients: list[httpx.Client], url: str, **kwargs: Any) -> list[httpx.Response]:
    """The same POST from every client, one thread each, released together by a barrier."""
    start = threading.Barrier(len(clients))

    def send(client: httpx.Client) -> httpx.Response:
        start.wait(timeout=10)
        return client.post(url, **kwargs)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(send, clients))


def test_two_operators_acknowledging_at_once_get_one_200_and_one_412(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    operators = [factories.credential(services, owner=dealer) for _ in range(2)]
    with server.client(operators[0].token) as setup:
        site_id = _site(setup)
        alarm_ids = [_raise(setup, site_id)["id"] for _ in range(3)]
    clients = [server.client(o.token) for o in operators]
    try:
        for client in clients:  # TLS handshakes done before the race starts
            assert client.get("/v1/me").status_code == 200
        for alarm_id in alarm_ids:
            url = f"/v1/alarms/{alarm_id}/acknowledge"
            results = _at_once(clients, url, headers={"If-Match": '"v1"'})
            assert sorted(r.status_code for r in results) == [200, 412]
            winner = operators[[r.status_code for r in results].index(200)]
            timeline = services.alarms.timeline(factories.actor_of(services, winner), alarm_id)
            assert [(t.action, t.actor_id) for t in timeline.items] == [
                ("created", operators[0].app.id),
                ("acknowledged", winner.app.id),
            ]
            assert _events(services, winner, alarm_id) == ["alarm.created", "alarm.acknowledged"]
    finally:
        for client in clients:
            client.close()


def test_without_if_match_the_loser_of_a_race_hears_409(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as setup:
        alarm_id = _raise(setup, _site(setup))["id"]
    clients = [server.client(cred.token), server.client(cred.token)]
    try:
        for client in clients:
            assert client.get("/v1/me").status_code == 200
        url = f"/v1/alarms/{alarm_id}/resolve"
        results = _at_once(clients, url, json={"resolution_code": "false_alarm"})
    finally:
        for client in clients:
            client.close()
    # The loser sent no precondition, so it is told the truth: already resolved.
    assert sorted(r.status_code for r in results) == [200, 409]
    assert _events(services, cred, alarm_id) == ["alarm.created", "alarm.resolved"]


def test_listing_filters_and_pages_newest_first(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    with server.client(cred.token) as client:
        site_a, site_b = _site(client), _site(client)
        raised = [
            _raise(client, site_a, type="burglary", occurred_at=(base).isoformat()),
            _raise(client, site_a, type="fire", occurred_at=(base + timedelta(days=1)).isoformat()),
            _raise(
                client, site_b, type="tamper", occurred_at=(base + timedelta(days=2)).isoformat()
            ),
            _raise(
                client, site_b, type="burglary", occurred_at=(base + timedelta(days=3)).isoformat()
            ),
            _raise(
                client,
                site_a,
                type="panic",
                priority=3,
                occurred_at=(base + timedelta(days=4)).isoformat(),
            ),
        ]
        ids = [a["id"] for a in raised]
        client.post(f"/v1/alarms/{ids[1]}/acknowledge")
        client.post(f"/v1/alarms/{ids[2]}/resolve", json={"resolution_code": "test"})
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/alarms", params=params).json()
            seen += [a["id"] for a in page["data"]]
            if (cursor := page["next_cursor"]) is None:
                break

        def listed(**params: Any) -> list[str]:
            response = client.get("/v1/alarms", params=params)
            assert response.status_code == 200, response.text
            return [a["id"] for a in response.json()["data"]]

        by_status = listed(status="new")
        by_site = listed(site_id=site_b)
        by_type = listed(type="burglary")
        by_priority = listed(priority=3)
        by_time = listed(since="2026-11-02T00:00:00Z", until="2026-11-04T00:00:00+00:00")
        combined = listed(status="new", site_id=site_a)
        naive_since = client.get("/v1/alarms", params={"since": "2026-11-02T00:00:00"})
        before_year_one = client.get("/v1/alarms", params={"until": "0001-01-01T00:00:00+01:00"})
        bad_cursor = client.get("/v1/alarms", params={"cursor": "nope"})
        bad_status = client.get("/v1/alarms", params={"status": "snoozed"})
    assert seen == ids[::-1]
    assert by_status == [ids[4], ids[3], ids[0]]
    assert by_site == [ids[3], ids[2]]
    assert by_type == [ids[3], ids[0]]
    assert by_priority == [ids[4], ids[2]]
    assert by_time == [ids[3], ids[2], ids[1]]
    assert combined == [ids[4], ids[0]]
    refused = (naive_since, before_year_one, bad_cursor, bad_status)
    assert [r.status_code for r in refused] == [422] * len(refused)


def test_timeline_pages_oldest_first(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        alarm = _raise(client, _site(client))
        url = f"/v1/alarms/{alarm['id']}"
        for n in range(4):
            client.post(f"{url}/annotate", json={"note": f"note {n}"})
        notes: list[str | None] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get(f"{url}/timeline", params=params).json()
            notes += [t["note"] for t in page["data"]]
            if (cursor := page["next_cursor"]) is None:
                break
    assert notes == [None, "note 0", "note 1", "note 2", "note 3"]


def test_alarm_changes_are_audited_with_the_caller_identity(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        created = client.post("/v1/alarms", json=BURGLARY | {"site_id": _site(client)})
        url = f"/v1/alarms/{created.json()['id']}"
        acked = client.post(f"{url}/acknowledge", json={"note": "Mrs Jones called"})

        def records(response: httpx.Response) -> list[dict[str, Any]]:
            rid = response.headers["x-request-id"]
            found = client.get("/v1/audit-events", params={"request_id": rid}).json()["data"]
            return list(found)

        on_create, on_ack = records(created), records(acked)
    assert sorted(r["action"] for r in on_create) == ["alarm.created", "api.request"]
    assert sorted(r["action"] for r in on_ack) == ["alarm.acknowledged", "api.request"]
    change = next(r for r in on_ack if r["action"] == "alarm.acknowledged")
    assert change["actor_id"] == cred.app.id
    assert change["target_id"] == created.json()["id"]
    assert change["scope"] == "alarms:write"
    assert change["details"] == {"via": "api", "from": "new", "to": "acknowledged"}
    assert "Mrs Jones" not in str(on_ack)
