"""What a webhook URL may be (S4, S5), checked at registration and again at every delivery.

`https://` only, in sandbox apps too: a webhook carries tenant data and a signature, and over
plain HTTP both are readable and the receiver cannot know the sender. No userinfo (credentials
in a URL end up in logs), no fragment (never sent, so it can only mislead). The host must not be
or resolve to an address the SSRF guard refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from vigil.core.errors import InvalidInput
from vigil.webhooks.resolver import Resolver
from vigil.webhooks.ssrf import AddressPolicy, IpAddress, parse_ip_literal

MAX_URL_LENGTH = 2000
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    url: str
    host: str
    port: int
    literal: IpAddress | None


def parse_url(url: str) -> WebhookUrl:
    """The URL's parts, or InvalidInput saying exactly what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"A webhook URL is at most {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidInput("A webhook URL cannot contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("The webhook URL is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme == "http":
        raise InvalidInput(
            "Webhook URLs must use https://; plain http:// is refused in every environment, "
            "sandbox included, because deliveries carry tenant data and signatures.",
            reason="https_required",
        )
    if scheme != "https":
        raise InvalidInput("Webhook URLs must start with https://.", reason="https_required")
    if "@" in parts.netloc:
        raise InvalidInput("A webhook URL cannot carry credentials (user:password@).")
    if parts.fragment or url.endswith("#"):
        raise InvalidInput("A webhook URL cannot have a fragment (#...).")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput("The webhook URL has no host.")
    if not host.isascii():
        raise InvalidInput("Write an internationalised host name in its xn-- (punycode) form.")
    if port == 0:
        raise InvalidInput("The webhook URL's port must be 1 to 65535.")
    return WebhookUrl(url, host, port or 443, parse_ip_literal(host))


def check_registration(url: str, policy: AddressPolicy, resolver: Resolver) -> WebhookUrl:
    """Refuse URLs whose host is, or now resolves to, a refused address.

    A name that does not resolve yet is accepted: deliveries resolve and vet it again anyway,
    and that is the check that matters (a name can change its answer at any time).
    """
    parsed = parse_url(url)
    if parsed.literal is not None:
        addresses = [parsed.literal]
    elif parsed.host.rstrip(".") in _LOCAL_NAMES or parsed.host.rstrip(".").endswith(".localhost"):
        addresses = resolver.resolve(parsed.host, parsed.port) or [parse_ip_literal("127.0.0.1")]  # type: ignore[list-item]
    else:
        addresses = resolver.resolve(parsed.host, parsed.port)
    refused = policy.vet(addresses)
    if refused is not None:
        raise InvalidInput(
            f"The webhook host is or resolves to a {refused.category.replace('_', ' ')} "
            "address, which deliveries may not reach.",
            reason=refused.reason,
            category=refused.category,
        )
    return parsed
