"""The one scope catalogue (S12). Every route names one of these, or is explicitly public."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from functools import lru_cache


class Scope(StrEnum):
    SITES_READ = "sites:read"
    SITES_WRITE = "sites:write"
    DEVICES_READ = "devices:read"
    DEVICES_WRITE = "devices:write"
    TELEMETRY_READ = "telemetry:read"
    TELEMETRY_WRITE = "telemetry:write"
    ALARMS_READ = "alarms:read"
    ALARMS_WRITE = "alarms:write"
    ALARMS_DISPATCH = "alarms:dispatch"
    SNAPSHOTS_READ = "snapshots:read"
    SNAPSHOTS_WRITE = "snapshots:write"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    APPS_READ = "apps:read"
    APPS_WRITE = "apps:write"
    AUDIT_READ = "audit:read"
    PRIVACY_WRITE = "privacy:write"


DESCRIPTIONS: dict[Scope, str] = {
    Scope.SITES_READ: "List and read sites, their arming state and its history.",
    Scope.SITES_WRITE: "Create and update sites; arm and disarm them.",
    Scope.DEVICES_READ: "List and read devices (bridges, cameras, panels, sensors) and status.",
    Scope.DEVICES_WRITE: "Register, update and remove devices.",
    Scope.TELEMETRY_READ: "Query device telemetry, raw or downsampled.",
    Scope.TELEMETRY_WRITE: "Ingest device telemetry, including heartbeats.",
    Scope.ALARMS_READ: "List and read alarms and their timelines.",
    Scope.ALARMS_WRITE: "Raise alarms; acknowledge, annotate and resolve them.",
    Scope.ALARMS_DISPATCH: "Dispatch responders to an alarm.",
    Scope.SNAPSHOTS_READ: "Download snapshots and clips.",
    Scope.SNAPSHOTS_WRITE: "Upload snapshots and clips.",
    Scope.WEBHOOKS_READ: "List webhook endpoints and their delivery attempts.",
    Scope.WEBHOOKS_WRITE: "Create, change, rotate and replay webhook endpoints.",
    Scope.APPS_READ: "List the dealer's apps and their API keys (never the secrets).",
    Scope.APPS_WRITE: "Create apps and issue, rotate and revoke their API keys.",
    Scope.AUDIT_READ: "Read and export the dealer's audit log.",
    Scope.PRIVACY_WRITE: "File end users' privacy requests (access, export, deletion).",
}


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Strictly parse scope names; an unknown name is an error, never silently dropped."""
    parsed: set[Scope] = set()
    for raw in values:
        name = raw.strip()
        if not name:
            continue
        try:
            parsed.add(Scope(name))
        except ValueError:
            raise ValueError(f"unknown scope '{name}'") from None
    return frozenset(parsed)


def encode_scopes(scopes: Iterable[Scope]) -> str:
    """Storage form: space separated, sorted (as in OAuth's `scope` parameter)."""
    return " ".join(sorted(s.value for s in scopes))


@lru_cache(maxsize=4096)
def decode_scopes(text: str) -> frozenset[Scope]:
    """Storage form to scopes. Cached: every request decodes its key's and its app's scope
    strings, and a handful of distinct strings recur; the result is immutable, and the
    strings themselves are still read from the database on every request."""
    return frozenset(Scope(s) for s in text.split())
