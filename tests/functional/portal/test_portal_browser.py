"""The portal in a real browser: Debian's Chromium driven headless by Playwright (issue 8).

No browser is ever downloaded: Playwright launches /usr/bin/chromium (installed by
scripts/install-system-packages.sh). The walk-through saves screenshots of the main screens in
docs/screenshots/, which the README shows.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from tests.support import factories, oauth
from tests.support.portal import PASSWORD, Operator, operator
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
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
