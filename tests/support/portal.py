"""Portal test helpers: operators of each role (with TOTP where asked) and a signed-in client."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import httpx
import pyotp
from tests.support.factories import OPERATOR

from vigil.services import Services
from vigil.tenancy.roles import PortalRole
from vigil.tenancy.users import Role

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Operator:
    dealer_id: str
    user_id: str
    email: str
    role: PortalRole
    totp_secret: str | None

    def code(self) -> str:
        assert self.totp_secret is not None
        return pyotp.TOTP(self.totp_secret).now()


def operator(
    services: Services, dealer_id: str, role: PortalRole, *, mfa: bool | None = None
) -> Operator:
    """An operator with `role`; owners and admins get TOTP unless `mfa=False`."""
    email = f"op{next(_counter)}@example.com"
    user = services.users.create(
        OPERATOR, dealer_id=dealer_id, email=email, role=Role.OPERATOR, password=PASSWORD
    )
    services.operators.set_role(OPERATOR, user.id, role)
    secret = None
    if mfa if mfa is not None else role in (PortalRole.OWNER, PortalRole.ADMIN):
        secret = services.operators.new_totp_secret()
        account = services.operators.account(user.id)
        # Enrolled with the previous step's code, leaving the current one free for sign-in
        # (each step is accepted once).
        earlier = pyotp.TOTP(secret).at(services.clock.now().timestamp() - 30)
        services.operators.enroll(OPERATOR, account, secret, earlier)
    return Operator(dealer_id, user.id, email, role, secret)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def submit_sign_in(
    client: httpx.Client, dealer_id: str, email: str, password: str
) -> httpx.Response:
    form = client.get("/portal/sign-in")
    return client.post(
        "/portal/sign-in",
        data={
            "dealer": dealer_id,
            "email": email,
            "password": password,
            "csrf": csrf_of(form.text),
        },
    )


def sign_in(client: httpx.Client, op: Operator) -> None:
    """Password, then TOTP when the operator has it; leaves the client signed in."""
    answer = submit_sign_in(client, op.dealer_id, op.email, PASSWORD)
    assert answer.status_code == 303, answer.text
    if op.totp_secret is not None:
        assert answer.headers["location"].startswith("/portal/sign-in/totp")
        page = client.get("/portal/sign-in/totp")
        answer = client.post(
            "/portal/sign-in/totp", data={"code": op.code(), "csrf": csrf_of(page.text)}
        )
        assert answer.status_code == 303, answer.text
    assert client.get("/portal/").status_code == 200
