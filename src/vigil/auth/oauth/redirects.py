"""Redirect URIs: registered exactly, matched exactly (RFC 6749 section 3.1.2, RFC 9700 section
2.1), with one exception: a native app's loopback URI may vary its port (RFC 8252 section 7.3),
because the app listens on whatever port the operating system gives it.

Prefix, suffix, case, path and query variations are all different URIs: open redirectors and
code theft through a lenient match are the attacks this stops.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_URI = 2000
MAX_URIS = 10
# RFC 8252 section 8.3: loopback by IP literal, never `localhost` (which may resolve elsewhere).
_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?(/[^#]*)?$")


class RedirectUriError(ValueError):
    pass


def validate_registration(uri: str) -> str:
    """A URI fit to register: https (no fragment, no credentials) or loopback http."""
    if len(uri) > MAX_URI or any(c.isspace() or ord(c) < 0x21 for c in uri):
        raise RedirectUriError(f"'{uri[:100]}' is not a valid redirect URI.")
    if _LOOPBACK.match(uri):
        return uri
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise RedirectUriError(f"'{uri[:100]}' is not a valid redirect URI.") from None
    if parts.scheme != "https" or not parts.hostname:
        raise RedirectUriError(
            f"'{uri[:100]}': redirect URIs must be https:// (or http://127.0.0.1 / "
            "http://[::1] for native apps)."
        )
    if parts.fragment or "#" in uri:
        raise RedirectUriError("A redirect URI must not contain a fragment (RFC 6749 3.1.2).")
    if parts.username is not None or parts.password is not None:
        raise RedirectUriError("A redirect URI must not carry credentials.")
    return uri


def _without_port(uri: str) -> str | None:
    match = _LOOPBACK.match(uri)
    if match is None:
        return None
    return f"http://{match.group(1)}{match.group(3) or ''}"


def matches(registered: list[str], presented: str) -> bool:
    """Exact string equality with a registered URI; for loopback URIs, equality but the port."""
    if presented in registered:
        return True
    loose = _without_port(presented)
    if loose is None:
        return False
    return any(_without_port(uri) == loose for uri in registered)
