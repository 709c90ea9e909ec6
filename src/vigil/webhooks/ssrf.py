"""Which addresses a webhook may reach (S5): the server-side request forgery guard.

A webhook URL is chosen by a tenant, and the platform then makes requests to it from inside its
own network. Without this guard a URL could aim those requests at the platform's loopback
services, its private network, or a cloud metadata service that hands out credentials.

Two rules make the guard hold:
- Every way of writing an address is decoded the way a resolver would (`127.1`, `0x7f000001`,
  `2130706433`, `0177.0.0.1`, `[::ffff:127.0.0.1]`, NAT64 and 6to4 embeddings), and the address
  itself is judged, never the spelling.
- Only globally routable unicast addresses pass. Listing the bad ranges one by one always misses
  one; `is_global` is the IANA special-purpose registry, and multicast and addresses embedding
  an IPv4 address are judged on top of it.
The platform operator may allow-list networks (`VIGIL_WEBHOOK_ALLOWED_NETWORKS`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes that carry an IPv4 address a gateway will forward to (RFC 6052, RFC 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an address is refused: `reason` is the stable code audits and problems carry."""

    address: str
    category: str
    reason: str = "address_not_allowed"


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """`host` read as the C library's `inet_aton` reads it, or None when it is not an address.

    1 to 4 dot-separated parts, each decimal, octal (leading 0) or hex (0x); the last part fills
    the remaining bytes. This is what `getaddrinfo` accepts, so it is what must be checked.
    """
    parts = host.rstrip(".").split(".") if host else []
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                value = int(part[2:], 16) if len(part) > 2 else 0
            elif len(part) > 1 and part.startswith("0"):
                value = int(part[1:], 8)
            else:
                value = int(part, 10) if part.isdigit() else -1
        except ValueError:
            return None
        if value < 0:
            return None
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def parse_ip_literal(host: str) -> IpAddress | None:
    """An IP address however it is written in a URL's host, or None for a DNS name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.split("%", 1)[0]  # an IPv6 zone id names an interface, not an address
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return parse_ipv4_literal(text)


def embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address forwards to (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def category_of(address: IpAddress) -> str | None:
    """None when `address` is public unicast; otherwise the kind of address it is."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return category_of(inner)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"  # includes 169.254.169.254, the cloud metadata service
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared_cgnat"
    if any(address in net for net in _DOCUMENTATION if net.version == address.version):
        return "documentation"
    if any(address in net for net in _PRIVATE if net.version == address.version):
        return "private"  # includes fd00:ec2::254, the IPv6 metadata service
    if not address.is_global:
        return "reserved"
    return None


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_PRIVATE = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("fc00::/7"),
)
_DOCUMENTATION = (
    ipaddress.ip_network("192.0.2.0/24"),
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("203.0.113.0/24"),
    ipaddress.ip_network("2001:db8::/32"),
    ipaddress.ip_network("3fff::/20"),
)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Public unicast addresses, plus whatever networks the operator allow-listed."""

    allowed: tuple[IpNetwork, ...] = ()

    @classmethod
    def of(cls, networks: Iterable[IpNetwork]) -> AddressPolicy:
        return cls(tuple(networks))

    def refusal(self, address: IpAddress) -> Refusal | None:
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        if any(a in net for a in candidates for net in self.allowed if a.version == net.version):
            return None
        category = category_of(address)
        return None if category is None else Refusal(str(address), category)

    def vet(self, addresses: Sequence[IpAddress]) -> Refusal | None:
        """Every address a name resolves to must pass: a resolver may hand out any of them."""
        for address in addresses:
            refused = self.refusal(address)
            if refused is not None:
                return refused
        return None
