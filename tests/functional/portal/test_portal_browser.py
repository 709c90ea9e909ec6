"""The portal in a real browser: Debian's Chromium driven headless by Playwright (issue 8).

No browser is ever downloaded: Playwright launches /usr/bin/chromium (installed by
scripts/install-system-packages.sh). The walk-through saves screenshots of the main screens in
docs/screenshots/, which the README shows.
"""

from __future__ import annotations

import math
import os
import re
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from tests.support import factories, oauth
from tests.support.portal import PASSWORD, Operator, operator
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.monitoring.alarm_models import AlarmType, NewAlarm
from vigil.services import Services
from vigil.tenancy.roles import PortalRole

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# `make screenshots` refreshes the committed ones in docs/screenshots/; an ordinary test run
# still takes every screenshot (so the screens render in a real browser) into a scratch folder,
# leaving the working tree untouched.
SHOTS = (
    Path(__file__).resolve().parents[3] / "docs" / "screenshots"
    if os.environ.get("VIGIL_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "vigil-screenshots"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, server: VigilServer) -> Iterator[Page]:
    # The server's certificate comes from its own test CA, which Chromium does not know.
    context = browser.new_context(
        base_url=server.base_url, ignore_https_errors=True, viewport={"width": 1280, "height": 860}
    )
    p = context.new_page()
    yield p
    context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, op: Operator, *, screenshots: bool = False, code: str = "") -> None:
    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/portal/sign-in\?next=/portal/"))
    page.get_by_label("Dealer ID").fill(op.dealer_id)
    page.get_by_label("E-mail").fill(op.email)
    page.get_by_label("Password").fill(PASSWORD)
    if screenshots:
        shot(page, "sign-in")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    page.get_by_label("Code").fill(code or op.code())
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))


def test_owner_manages_a_key_and_sees_it_in_the_audit_log(page: Page, services: Services) -> None:
    dealer = factories.dealer(services, name="Northwind Security")
    site_cred = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    services.sites.create(
        factories.actor_of(services, site_cred),
        {"name": "Harbour Warehouse", "timezone": "Europe/London", "account_number": "A-1042"},
    )
    owner = operator(services, dealer.id, PortalRole.OWNER)
    page.on("dialog", lambda dialog: dialog.accept())

    sign_in(page, owner, screenshots=True)
    expect(page.get_by_role("heading", name="Northwind Security")).to_be_visible()
    shot(page, "dashboard")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the layout reflows
    shot(page, "dashboard-phone")
    page.set_viewport_size({"width": 1280, "height": 860})

    page.get_by_role("link", name="Apps & keys").click()
    page.get_by_label("Name").fill("Central station bridge")
    page.get_by_role("checkbox", name=re.compile("^sites:read")).check()
    page.get_by_role("checkbox", name=re.compile("^alarms:read")).check()
    shot(page, "apps")
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("heading", name="Central station bridge")).to_be_visible()

    page.get_by_role("button", name="Issue a key").click()
    first = page.get_by_label("API key").input_value()
    assert first.startswith("vgl_live_")
    shot(page, "key-shown-once")
    page.get_by_role("link", name="Done").click()

    page.get_by_role("button", name="Rotate key").click()
    second = page.get_by_label("API key").input_value()
    assert second.startswith("vgl_live_")
    assert second != first
    page.get_by_role("link", name="Done").click()
    outgoing = page.locator("tr", has_text="rotating")
    expect(outgoing).to_have_count(1)
    outgoing.get_by_role("button", name="Revoke").click()  # done migrating: end the grace now
    expect(page.locator("tr", has_text="revoked")).to_have_count(1)
    expect(page.locator("tr", has_text="active")).to_have_count(1)
    shot(page, "app-keys")

    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill("https://93.184.215.14/vigil")
    page.get_by_label("Description").fill("Dispatch board")
    page.get_by_role("checkbox", name="site.armed").check()
    page.get_by_role("button", name="Add endpoint").click()
    assert page.get_by_label("Signing secret").input_value().startswith("whsec_")
    page.get_by_role("link", name="Done").click()
    expect(page.get_by_role("heading", name="Health")).to_be_visible()
    shot(page, "webhook-endpoint")
    page.get_by_role("link", name="← Webhooks").click()
    expect(page.get_by_text("Dispatch board")).to_be_visible()
    shot(page, "webhooks")

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Actor id").fill(owner.user_id)
    page.get_by_role("button", name="Filter").click()
    actions = (
        "webhook_endpoint.created",
        "api_key.revoked",
        "api_key.rotated",
        "api_key.created",
        "app.created",
    )
    for action in actions:
        row = page.locator("tr", has_text=action).first
        expect(row).to_contain_text(f"operator:{owner.user_id}")
    expect(page.locator("tr", has_text="portal.signed_in").first).to_be_visible()
    shot(page, "audit-log")

    page.get_by_role("link", name="Verify integrity now").click()
    expect(page.get_by_text("verified").first).to_be_visible()

    page.get_by_role("link", name="Sites").click()
    page.get_by_role("link", name="Harbour Warehouse").click()
    expect(page.get_by_text("A-1042")).to_be_visible()
    shot(page, "site")


def test_operator_grants_and_revokes_oauth_consent(page: Page, services: Services) -> None:
    dealer = factories.dealer(services, name="Consent Dealer")
    cred = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    cred_app = oauth.client(services, cred)
    owner = operator(services, dealer.id, PortalRole.OWNER)
    page.route(
        f"{oauth.REDIRECT.split('?')[0]}**",
        lambda route: route.fulfill(status=200, body="client callback"),
    )
    _verifier, challenge = oauth.pkce_pair()
    params = oauth.authorize_params(cred_app, challenge)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    page.goto(f"/oauth/authorize?{query}")
    expect(page.get_by_role("heading", name=re.compile("^Sign in to allow"))).to_be_visible()
    shot(page, "oauth-consent")
    page.get_by_label("E-mail").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    assert owner.totp_secret is not None  # an account with TOTP gives a code here too
    page.get_by_label("Authenticator code").fill(owner.code())
    page.get_by_role("button", name="Allow").click()
    expect(page).to_have_url(re.compile(r"code="))

    # Each time step's code works once: the portal sign-in takes the next one.
    sign_in(page, owner, code=pyotp.TOTP(owner.totp_secret).at(time.time() + 30))
    page.get_by_role("link", name="Connected apps").click()
    row = page.locator("tr", has_text=cred.app.name)
    expect(row).to_contain_text("sites:read")
    shot(page, "account-connected-apps")
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("No connected apps.")).to_be_visible()


def _camera_frame(width: int = 320, height: int = 180) -> bytes:
    """A small PNG that looks like a night camera frame (so the screenshot shows a picture)."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in _pixel(x, y, width, height))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _pixel(x: int, y: int, width: int, height: int) -> tuple[int, int, int]:
    floor = y > height * 2 // 3
    door = width // 3 < x < width // 2 and height // 4 < y <= height * 2 // 3
    shade = 40 + (x * 30) // width + (y * 20) // height
    if door:
        return (shade + 60, shade + 55, shade + 30)
    return (shade // 2, shade + 10, shade // 2) if floor else (shade // 3, shade // 2, shade)


def test_operator_works_an_alarm_in_the_console_and_finds_it_in_the_audit_log(
    page: Page, services: Services
) -> None:
    dealer = factories.dealer(services, name="Harbour Monitoring")
    cred = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    app = factories.actor_of(services, cred)
    site = services.sites.create(app, {"name": "Harbour Warehouse", "account_number": "A-1042"})
    camera = services.devices.create(
        app,
        {
            "site_id": site.id,
            "kind": "camera",
            "serial": "CAM-7731",
            "name": "Loading bay camera",
            "firmware_version": "4.2.1",
        },
    )
    now = services.clock.now()
    readings: list[dict[str, object]] = [
        {
            "metric": "temperature.c",
            "value": round(14 + 5 * math.sin(n / 40) + (n % 5) * 0.3, 2),
            "timestamp": now - timedelta(minutes=5 * n),
        }
        for n in range(288)
    ]
    readings.append({"metric": "heartbeat", "value": 1.0, "timestamp": now})
    services.telemetry.ingest(app, camera.id, readings)  # type: ignore[arg-type]
    frame = services.snapshots.create(app, camera.id, [_camera_frame()], content_type="image/png")
    services.alarms.create(
        app,
        NewAlarm(site.id, AlarmType.TROUBLE, now, device_id=camera.id, zone="Mains power"),
    )
    alarm = services.alarms.create(
        app,
        NewAlarm(
            site.id,
            AlarmType.BURGLARY,
            now,
            device_id=camera.id,
            zone="Zone 4 - loading bay PIR",
            description="Loading bay motion while armed away",
            snapshot_ids=(frame.id,),
            verification_requested=True,
        ),
    )
    op = operator(services, dealer.id, PortalRole.OPERATOR, mfa=True)
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    sign_in(page, op)
    page.get_by_role("link", name="Alarms").click()
    expect(page.get_by_role("heading", name="Alarm console")).to_be_visible()
    queue = page.locator("#queue")
    expect(queue.get_by_role("link", name="Burglary")).to_be_visible()
    # The queue refreshes itself (htmx, loaded under the CSP with its SRI hash): an alarm raised
    # now appears at the top without a reload.
    services.alarms.create(
        app, NewAlarm(site.id, AlarmType.FIRE, services.clock.now(), zone="Kitchen")
    )
    expect(queue.locator("tbody tr").first).to_contain_text("Fire", timeout=15_000)
    shot(page, "alarm-console")

    queue.get_by_role("link", name="Burglary").click()
    expect(page.get_by_role("heading", name=re.compile("Burglary alarm"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(f"Snapshot {frame.id}"))).to_be_visible()
    page.get_by_label("Acknowledgement note (optional)").fill("Intruder visible on camera")
    page.get_by_role("button", name="Acknowledge", exact=True).click()
    expect(page.locator("h1 .badge", has_text="acknowledged")).to_be_visible()
    page.get_by_label("Agency").fill("Harbour police")
    page.get_by_label("Dispatch note (optional)").fill("Unit 12 en route")
    page.get_by_role("button", name="Dispatch").click()
    expect(page.locator("h1 .badge", has_text="dispatched")).to_be_visible()
    shot(page, "alarm-detail")
    page.get_by_label("Resolution", exact=True).select_option("confirmed_intrusion")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("h1 .badge", has_text="resolved")).to_be_visible()
    expect(page.get_by_text("Resolution: confirmed intrusion")).to_be_visible()
    assert services.alarms.get(app, alarm.id).status.value == "resolved"

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Actor id").fill(op.user_id)
    page.get_by_role("button", name="Filter").click()
    for action in ("alarm.resolved", "alarm.dispatched", "alarm.acknowledged"):
        row = page.locator("tr", has_text=action).first
        expect(row).to_contain_text(f"operator:{op.user_id}")
        expect(row).to_contain_text(alarm.id)

    page.get_by_role("link", name="Devices").click()
    page.get_by_role("link", name="Loading bay camera").click()
    expect(page.get_by_role("img", name="temperature.c on Loading bay camera")).to_be_visible()
    shot(page, "device-chart")
    assert blocked == []
