"""Operator accounts for the dealer portal: role, password sign-in with lockout, TOTP second
factor with recovery codes, and the resets an admin performs on another operator.

Site users (a dealer's customers) sign in through the same code, to the portal's Connected apps
and to the OAuth consent page: one password check, one lockout counter and one second-factor
rule wherever a person signs in. Their account has the role `site_user` and no portal scope.

Why each number: five wrong answers in a row lock the account for 15 minutes (OWASP ASVS 2.2.1
asks for throttling that defeats online guessing without enabling easy denial of service; a
short lock does both). The refusal text is the same for a wrong password, an unknown e-mail and
a locked account, so the form cannot be used to discover accounts or their state; the audit log
records which it was. TOTP codes are accepted one step either side (clock drift) and each time
step only once (RFC 6238 section 5.2: a code seen on the wire cannot be replayed).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from sqlalchemy import Connection, insert, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, NotFound, PermissionDenied
from vigil.crypto.binding import Binding, BindingScope
from vigil.crypto.errors import DecryptionFailed, KeyUnavailable
from vigil.crypto.fields import FieldCipher
from vigil.storage.db import Database
from vigil.storage.tables import operator_accounts, portal_sessions, users
from vigil.tenancy.roles import MFA_REQUIRED, ROLE_SCOPES, PortalRole
from vigil.tenancy.users import MAX_PASSWORD, MIN_PASSWORD, Role, User, UserService, normalize_email

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
RECOVERY_CODES = 10
# TOTP seeds are sealed (S6) with the dealer's `secrets` keys, bound to dealer / `production` /
# `totp` / user id / `secret`. An operator account spans both environments; the portal signs in
# to production, so the fixed `production` names the environment of the binding.
TOTP_ENVIRONMENT = "production"
PORTAL: Mapping[str, str] = {"front": "portal"}
REFUSED = "That e-mail and password do not match an account, or it is locked for a while."


class SignInRefused(PermissionDenied):
    code = "sign_in_refused"


UNAVAILABLE = (
    "Your authenticator's code cannot be checked: its stored key failed its integrity check. "
    "Use a recovery code, or ask an owner or admin to reset your second factor."
)


@dataclass(frozen=True, slots=True)
class SecondFactor:
    """The verdict on a second-factor code. True only when accepted. `unavailable`: the stored
    TOTP seed did not open (tampered with, or its key destroyed), which counts as a failure
    like a wrong code, is audited as a security event, and deserves its own message."""

    ok: bool
    unavailable: bool = False

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class Account:
    user: User
    role: PortalRole
    mfa_enrolled: bool

    @property
    def mfa_required(self) -> bool:
        return self.role in MFA_REQUIRED

    @property
    def scopes(self) -> frozenset[Any]:
        return ROLE_SCOPES[self.role]


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().encode()).hexdigest()


def new_recovery_codes() -> list[str]:
    """Ten codes of 80 random bits each (20 hex digits), in two groups for reading aloud. A
    code stands in for the second factor, so it must be far beyond guessing even with the
    sign-in throttle off: 40 bits (what an earlier version made) was not."""
    codes = []
    for _ in range(RECOVERY_CODES):
        digits = secrets.token_hex(10)
        codes.append(f"{digits[:10]}-{digits[10:]}")
    return codes


def totp_binding(dealer_id: str, user_id: str) -> Binding:
    return BindingScope(dealer_id, TOTP_ENVIRONMENT, "totp").bind(user_id, "secret")


def _matching_step(secret: str, code: str, now: datetime, after: int | None = None) -> int | None:
    """The time step (one either side of now) whose code this is, if not already used."""
    if not (code.isdigit() and len(code) == 6):
        return None
    try:
        totp = pyotp.TOTP(secret)
        step = totp.timecode(now)
        for candidate in (step, step - 1, step + 1):
            fresh = after is None or candidate > after
            if fresh and secrets.compare_digest(totp.generate_otp(candidate), code):
                return candidate
    except (ValueError, TypeError):  # a secret that is not base32
        return None
    return None


class OperatorAccounts:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        users_: UserService,
        secrets_: FieldCipher,
    ) -> None:
        self._db, self._audit, self._clock, self._users = db, audit, clock, users_
        self._secrets = secrets_
        self._hasher = PasswordHasher()

    # --- reading -------------------------------------------------------------------------
    def _row(self, conn: Connection, user_id: str) -> dict[str, Any]:
        row = (
            conn.execute(select(operator_accounts).where(operator_accounts.c.user_id == user_id))
            .mappings()
            .first()
        )
        if row is not None:
            return dict(row)
        # Operators created before the portal existed (or by `vigil users create`) start as
        # owners: they could already delegate every scope, so this grants nothing new. Site
        # users are site users.
        kind = conn.execute(select(users.c.role).where(users.c.id == user_id)).scalar()
        role = PortalRole.SITE_USER if kind == Role.SITE_USER.value else PortalRole.OWNER
        fresh: dict[str, Any] = {
            "user_id": user_id,
            "portal_role": role.value,
            "totp_secret_sealed": None,
            "totp_last_step": None,
            "recovery_codes": [],
            "failed_sign_ins": 0,
            "locked_until": None,
            "updated_at": self._clock.now(),
        }
        conn.execute(insert(operator_accounts).values(**fresh))
        return fresh

    def account(self, user_id: str) -> Account:
        """An operator's or site user's account (a site user's role is always `site_user`)."""
        user = self._users.get(user_id)
        query = select(operator_accounts).where(operator_accounts.c.user_id == user_id)
        with self._db.read() as conn:  # every portal request reads this: no write lock
            stored = conn.execute(query).mappings().first()
        found: Mapping[str, Any]
        if stored is None:
            with self._db.transaction() as conn:
                found = self._row(conn, user_id)
        else:
            found = dict(stored)
        role = (
            PortalRole.SITE_USER
            if user.role is Role.SITE_USER
            else PortalRole(found["portal_role"])
        )
        if user.role is Role.OPERATOR and role is PortalRole.SITE_USER:
            raise NotFound(f"No operator '{user_id}'.")  # never assigned; refuse, grant nothing
        return Account(user, role, found["totp_secret_sealed"] is not None)

    def team(self, actor: Actor) -> list[Account]:
        """The actor's dealer's operators, for an owner or admin (others: 403)."""
        self._ensure_manager(actor)
        assert actor.tenant is not None
        users_ = self._users.list(actor.tenant.dealer_id)
        return [self.account(u.id) for u in users_ if u.role is Role.OPERATOR]

    def _ensure_manager(self, actor: Actor) -> Account:
        if actor.tenant is None:
            raise PermissionDenied("Only an owner or admin may manage operators.")
        me = self.account(actor.id)
        if me.role not in MFA_REQUIRED:
            raise PermissionDenied("Only an owner or admin may manage operators.")
        return me

    # --- sign-in -------------------------------------------------------------------------
    def sign_in(
        self,
        actor: Actor,
        dealer_id: str,
        email: str,
        password: str,
        where: Mapping[str, str] = PORTAL,
    ) -> Account:
        """Password step, for operators and site users alike. Raises `SignInRefused` with one
        message for every reason. `where` goes into failure records' details: the `front`
        (`portal`, `oauth_consent`) and, at the consent form, the `app_id` asking."""
        now = self._clock.now()
        try:
            address = normalize_email(email)
        except InvalidInput:
            address = ""
        with self._db.read() as conn:
            found = conn.execute(
                select(users.c.id, users.c.role).where(
                    users.c.dealer_id == dealer_id, users.c.email == address
                )
            ).first()
        user_id = found[0] if found is not None else None
        locked = False
        if user_id is not None:
            with self._db.transaction() as conn:
                until = self._row(conn, user_id)["locked_until"]
            locked = until is not None and until > now
        # Always pay the argon2 cost, locked or not, so timing tells nothing either.
        user = self._users.authenticate(dealer_id, address or email, password)
        if user is None or user_id is None or locked or user.id != user_id:
            reason = "locked" if locked else "bad_credentials"
            self._failed(actor, dealer_id, user_id, reason, where)
            raise SignInRefused(REFUSED)
        account = self.account(user.id)
        if not (account.mfa_enrolled or account.mfa_required):
            with self._db.transaction() as conn:
                self._succeeded(conn, user.id, now)
        return account

    def _failed(
        self,
        actor: Actor,
        dealer_id: str,
        user_id: str | None,
        reason: str,
        where: Mapping[str, str] = PORTAL,
        result: str = "failure",
    ) -> None:
        now = self._clock.now()
        with self._db.transaction() as conn:
            action = AuditAction.USER_SIGN_IN_FAILED
            if user_id is not None and reason != "locked":
                row = self._row(conn, user_id)
                failures = row["failed_sign_ins"] + 1
                values: dict[str, Any] = {"failed_sign_ins": failures, "updated_at": now}
                if failures >= MAX_FAILURES:
                    values.update(failed_sign_ins=0, locked_until=now + LOCKOUT)
                    action = AuditAction.USER_LOCKED_OUT
                conn.execute(
                    update(operator_accounts)
                    .where(operator_accounts.c.user_id == user_id)
                    .values(**values)
                )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    action,
                    target_type="user" if user_id else None,
                    target_id=user_id,
                    result=result,
                    dealer_id=dealer_id,
                    details={"reason": reason, **where},
                ),
            )

    def _succeeded(self, conn: Connection, user_id: str, now: datetime) -> None:
        conn.execute(
            update(operator_accounts)
            .where(operator_accounts.c.user_id == user_id)
            .values(failed_sign_ins=0, locked_until=None, updated_at=now)
        )

    def refuse_without_second_factor(
        self, actor: Actor, account: Account, where: Mapping[str, str]
    ) -> None:
        """A role that needs a second factor has none set up: the sign-in ends here, audited
        (not counted toward the lockout: the password was right, nothing is being guessed)."""
        now = self._clock.now()
        self._audit.write_now(
            actor.record(
                now,
                AuditAction.USER_SIGN_IN_FAILED,
                target_type="user",
                target_id=account.user.id,
                result="failure",
                dealer_id=account.user.dealer_id,
                details={"reason": "second_factor_not_set_up", **where},
            )
        )

    def second_factor(
        self, actor: Actor, account: Account, code: str, where: Mapping[str, str] = PORTAL
    ) -> SecondFactor:
        """A current TOTP code (each time step once) or an unused recovery code.

        A seed that does not open (`DecryptionFailed`: the row was tampered with or moved;
        `KeyUnavailable`: its key is gone) is never an error page: the attempt fails like a
        wrong code and counts toward the lockout, is audited with result `security_event` and
        reason `second_factor_unavailable`, and a recovery code still works. A KMS outage
        (`KmsError`, 503) is not the account's fault and counts nothing."""
        now = self._clock.now()
        user_id, dealer_id = account.user.id, account.user.dealer_id
        code = code.strip().replace(" ", "")[:40]
        # Opened before the transaction (a key lookup must not wait on SQLite's write lock).
        # The seed read here is checked again inside: a reset or re-enrolment in between
        # leaves a different ciphertext, and the code is then judged against nothing.
        query = select(operator_accounts.c.totp_secret_sealed)
        with self._db.read() as conn:
            sealed = conn.execute(query.where(operator_accounts.c.user_id == user_id)).scalar()
        opened, unavailable = None, False
        if sealed is not None and code.isdigit():
            try:
                opened = self._secrets.open(totp_binding(dealer_id, user_id), sealed).decode()
            except (DecryptionFailed, KeyUnavailable):
                unavailable = True
        with self._db.transaction() as conn:
            row = self._row(conn, user_id)
            locked = row["locked_until"] is not None and row["locked_until"] > now
            secret = opened if row["totp_secret_sealed"] == sealed else None
            ok, used_recovery = False, False
            step = None
            if not locked and secret and code.isdigit():
                step = _matching_step(secret, code, now, row["totp_last_step"])
                if step is not None:
                    conn.execute(
                        update(operator_accounts)
                        .where(operator_accounts.c.user_id == user_id)
                        .values(totp_last_step=step)
                    )
                    ok = True
            elif not locked and _digest(code) in row["recovery_codes"]:
                remaining = [c for c in row["recovery_codes"] if c != _digest(code)]
                conn.execute(
                    update(operator_accounts)
                    .where(operator_accounts.c.user_id == user_id)
                    .values(recovery_codes=remaining)
                )
                ok = used_recovery = True
            if ok:
                self._succeeded(conn, user_id, now)
                if used_recovery:
                    self._audit.write_in(
                        conn,
                        actor.record(
                            now,
                            AuditAction.USER_RECOVERY_CODE_USED,
                            target_type="user",
                            target_id=user_id,
                            dealer_id=dealer_id,
                        ),
                    )
                return SecondFactor(ok=True)
        if locked:
            self._failed(actor, dealer_id, user_id, "locked", where)
        elif unavailable:
            reason = "second_factor_unavailable"
            self._failed(actor, dealer_id, user_id, reason, where, result="security_event")
        else:
            self._failed(actor, dealer_id, user_id, "bad_second_factor", where)
        return SecondFactor(ok=False, unavailable=unavailable and not locked)

    # --- enrolment and resets ------------------------------------------------------------
    @staticmethod
    def new_totp_secret() -> str:
        return pyotp.random_base32()

    @staticmethod
    def provisioning_uri(secret: str, email: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="Vigil")

    def enroll(self, actor: Actor, account: Account, secret: str, code: str) -> list[str]:
        """Confirm a new TOTP seed with a code from the authenticator; returns the recovery
        codes, shown once."""
        now = self._clock.now()
        step = _matching_step(secret, code.strip(), now) if len(secret) == 32 else None
        if step is None:
            raise InvalidInput("That code does not match; check the authenticator's clock.")
        codes = new_recovery_codes()
        sealed = self._secrets.seal(
            totp_binding(account.user.dealer_id, account.user.id), secret.encode()
        )
        with self._db.transaction() as conn:
            self._row(conn, account.user.id)
            conn.execute(
                update(operator_accounts)
                .where(operator_accounts.c.user_id == account.user.id)
                .values(
                    totp_secret_sealed=sealed,
                    totp_last_step=step,
                    recovery_codes=[_digest(c) for c in codes],
                    updated_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.USER_MFA_ENROLLED,
                    target_type="user",
                    target_id=account.user.id,
                    dealer_id=account.user.dealer_id,
                ),
            )
        return codes

    def _managed(self, actor: Actor, user_id: str) -> Account:
        """Another operator of the actor's own dealer (else 404), whom the actor outranks."""
        tenant = actor.tenant
        try:
            target = self.account(user_id)
        except NotFound:
            raise NotFound(f"No operator '{user_id}'.") from None
        if (
            tenant is None
            or target.user.dealer_id != tenant.dealer_id
            or target.role is PortalRole.SITE_USER
        ):
            raise NotFound(f"No operator '{user_id}'.")
        me = self._ensure_manager(actor)
        if target.role is PortalRole.OWNER and me.role is not PortalRole.OWNER:
            raise PermissionDenied("Only an owner may change another owner.")
        return target

    def set_role(self, actor: Actor, user_id: str, role: PortalRole) -> None:
        """Changing a role changes privilege: the operator's sessions end, so the next one is
        issued under the new role (the CLI, with no principal, may set any operator role)."""
        if role is PortalRole.SITE_USER:
            raise InvalidInput("'site_user' is not a role an operator can be given.")
        if actor.principal is not None:
            self._managed(actor, user_id)
            if role is PortalRole.OWNER and self.account(actor.id).role is not PortalRole.OWNER:
                raise PermissionDenied("Only an owner can make another owner.")
        elif self.account(user_id).role is PortalRole.SITE_USER:
            raise NotFound(f"No operator '{user_id}'.")
        now = self._clock.now()
        with self._db.transaction() as conn:
            self._row(conn, user_id)
            conn.execute(
                update(operator_accounts)
                .where(operator_accounts.c.user_id == user_id)
                .values(portal_role=role.value, updated_at=now)
            )
            self._revoke_sessions(conn, user_id, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.USER_ROLE_CHANGED,
                    target_type="user",
                    target_id=user_id,
                    dealer_id=self._users.get(user_id).dealer_id,
                    details={"role": role.value},
                ),
            )

    def reset_mfa(self, actor: Actor, user_id: str) -> None:
        target = self._managed(actor, user_id)
        now = self._clock.now()
        with self._db.transaction() as conn:
            conn.execute(
                update(operator_accounts)
                .where(operator_accounts.c.user_id == user_id)
                .values(
                    totp_secret_sealed=None, totp_last_step=None, recovery_codes=[], updated_at=now
                )
            )
            self._revoke_sessions(conn, user_id, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.USER_MFA_RESET,
                    target_type="user",
                    target_id=user_id,
                    dealer_id=target.user.dealer_id,
                ),
            )

    def reset_password(self, actor: Actor, user_id: str, password: str) -> None:
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidInput(f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters.")
        target = self._managed(actor, user_id)
        hashed = self._hasher.hash(password)
        now = self._clock.now()
        with self._db.transaction() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=hashed))
            self._succeeded(conn, user_id, now)
            self._revoke_sessions(conn, user_id, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.USER_PASSWORD_RESET,
                    target_type="user",
                    target_id=user_id,
                    dealer_id=target.user.dealer_id,
                ),
            )

    @staticmethod
    def _revoke_sessions(conn: Connection, user_id: str, now: datetime) -> None:
        """A reset ends every session of that operator: whoever held the old factor is out."""
        conn.execute(
            update(portal_sessions)
            .where(portal_sessions.c.user_id == user_id, portal_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
