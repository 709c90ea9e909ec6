"""`/.well-known/security.txt` (RFC 9116, S20), rebuilt on every request.

Building it per request keeps `Expires` a fixed distance ahead forever, so a long-running
deployment can never serve a stale file (RFC 9116 section 2.5.5 recommends less than a year).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from vigil.config import Settings

EXPIRES_AHEAD = timedelta(days=180)


def security_txt(settings: Settings, now: datetime) -> str:
    expires = (now + EXPIRES_AHEAD).replace(microsecond=0)
    lines = [
        f"Contact: {settings.security_contact}",
        f"Expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"Policy: {settings.security_policy_url}",
        f"Preferred-Languages: {settings.security_languages}",
        f"Canonical: {settings.https_origin}/.well-known/security.txt",
    ]
    return "\n".join(lines) + "\n"
