"""Tenancy values, frozen so a service can hand them out without fear of mutation."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Plan(StrEnum):
    STANDARD = "standard"
    ENTERPRISE = "enterprise"


STANDARD_RETENTION_DAYS = 365
MAX_RETENTION_DAYS = 2557


@dataclass(frozen=True, slots=True)
class Dealer:
    id: str
    name: str
    plan: Plan
    audit_retention_days: int
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "plan": self.plan.value,
            "audit_retention_days": self.audit_retention_days,
            "created_at": self.created_at.isoformat(),
        }


def ip_allowed(networks: tuple[IpNetwork, ...], ip: str | None) -> bool:
    """An empty allow list admits any address; otherwise the caller must be inside one."""
    if not networks:
        return True
    if ip is None:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


@dataclass(frozen=True, slots=True)
class App:
    id: str
    dealer_id: str
    environment: Environment
    name: str
    scopes: frozenset[Scope]
    ip_allow_list: tuple[IpNetwork, ...]
    created_at: datetime

    def allows_ip(self, ip: str | None) -> bool:
        return ip_allowed(self.ip_allow_list, ip)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dealer_id": self.dealer_id,
            "environment": self.environment.value,
            "name": self.name,
            "scopes": sorted(s.value for s in self.scopes),
            "ip_allow_list": [str(n) for n in self.ip_allow_list],
            "created_at": self.created_at.isoformat(),
        }


def parse_networks(values: list[str]) -> tuple[IpNetwork, ...]:
    """Strict CIDR parsing (host bits must be zero) so a typo cannot widen an allow list."""
    networks: list[IpNetwork] = []
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError:
            raise ValueError(
                f"'{text}' is not a network in CIDR form (e.g. 203.0.113.0/24)"
            ) from None
    return tuple(networks)
