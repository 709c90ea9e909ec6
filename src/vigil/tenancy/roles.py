"""Operator roles in the dealer portal, each a documented set of scopes from the one catalogue
(S12). The portal authorizes pages and actions by these scopes with the API's own check, so a
role is nothing but a name for a scope set (docs/portal.md has the table)."""

from __future__ import annotations

from enum import StrEnum

from vigil.auth.scopes import Scope


class PortalRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    # A dealer's customer (an OAuth site user): signs in only to grant consent and to see and
    # revoke their connected apps. Never assigned to an operator; holds no portal scope.
    SITE_USER = "site_user"


_READ = frozenset(
    {
        Scope.SITES_READ,
        Scope.DEVICES_READ,
        Scope.TELEMETRY_READ,
        Scope.ALARMS_READ,
        Scope.SNAPSHOTS_READ,
        Scope.AUDIT_READ,
    }
)

ROLE_SCOPES: dict[PortalRole, frozenset[Scope]] = {
    # Owners and admins hold every scope; they differ in who may manage whom (an admin cannot
    # change an owner), not in what they may do to the dealer's data.
    PortalRole.OWNER: frozenset(Scope),
    PortalRole.ADMIN: frozenset(Scope),
    # Central-station operators work the alarm queue; they never manage apps, keys or webhooks.
    PortalRole.OPERATOR: _READ | {Scope.ALARMS_WRITE, Scope.ALARMS_DISPATCH, Scope.WEBHOOKS_READ},
    # Viewers read; no key management, no alarm handling.
    PortalRole.VIEWER: _READ,
    PortalRole.SITE_USER: frozenset(),
}

# The roles an owner or admin may give an operator (Users and roles).
OPERATOR_ROLES = (PortalRole.OWNER, PortalRole.ADMIN, PortalRole.OPERATOR, PortalRole.VIEWER)

# A second factor is mandatory where a stolen password would hand over key management.
MFA_REQUIRED = frozenset({PortalRole.OWNER, PortalRole.ADMIN})
