"""IP allow lists on the hot path (S9): an app's networks bind its API keys and the access
tokens users granted it; a partner's networks bind the tokens it obtains by assertion. One
check for every credential kind, so none of them is the way around another's allow list."""

from __future__ import annotations

import json
from functools import lru_cache

from vigil.auth.principal import Principal
from vigil.core.errors import PermissionDenied
from vigil.tenancy.models import IpNetwork, ip_allowed, parse_networks


class AddressNotAllowed(PermissionDenied):
    """A valid credential used from outside its allow list. Carries the principal: the
    credential is genuine, so its owner must see the refusal in its own audit log."""

    code = "address_not_allowed"

    def __init__(self, principal: Principal) -> None:
        super().__init__("This credential may not be used from this address.")
        self.principal = principal


def check_address(principal: Principal, stored: object, client_ip: str | None) -> Principal:
    """`principal` if `client_ip` is inside the stored allow list (or there is none)."""
    networks = allow_list(stored)
    if networks and not ip_allowed(networks, client_ip):
        raise AddressNotAllowed(principal)
    return principal


def allow_list(stored: object) -> tuple[IpNetwork, ...]:
    """A stored allow list as networks; the JSON (text on SQLite through the raw driver, a list
    on PostgreSQL, NULL for none) is parsed once per distinct value, not on every request."""
    if stored is None:
        return ()
    if isinstance(stored, str | bytes):
        return _parse(stored if isinstance(stored, str) else stored.decode())
    return _parse(json.dumps(list(stored) if isinstance(stored, list) else []))


@lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[IpNetwork, ...]:
    return parse_networks(list(json.loads(text) or []))
