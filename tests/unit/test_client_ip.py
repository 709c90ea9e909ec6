"""Forwarded addresses are believed only from trusted proxies, read right to left."""

from __future__ import annotations

import ipaddress

from vigil.edge.client_ip import resolve_client_ip

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_untrusted_peer_forwarded_header_is_ignored() -> None:
    assert resolve_client_ip("198.51.100.1", "203.0.113.9", TRUSTED) == "198.51.100.1"


def test_trusted_peer_forwarded_client_is_used() -> None:
    assert resolve_client_ip("10.1.1.1", "203.0.113.9", TRUSTED) == "203.0.113.9"


def test_rightmost_untrusted_hop_wins_over_a_spoofed_left() -> None:
    assert resolve_client_ip("10.1.1.1", "1.2.3.4, 203.0.113.9, 10.2.2.2", TRUSTED) == "203.0.113.9"


def test_ipv6_hops_and_ports() -> None:
    assert resolve_client_ip("fd00::1", "[2001:db8::5]:443", TRUSTED) == "2001:db8::5"
    assert resolve_client_ip("10.0.0.1", "203.0.113.9:5555", TRUSTED) == "203.0.113.9"


def test_garbage_falls_back_to_the_peer() -> None:
    assert resolve_client_ip("10.1.1.1", "not-an-ip", TRUSTED) == "10.1.1.1"


def test_no_trusted_proxies_means_the_peer() -> None:
    assert resolve_client_ip("10.1.1.1", "203.0.113.9", []) == "10.1.1.1"
