"""Which verifier a bearer credential goes to, by its prefix: the one place the edge learns
that there is more than one kind (S12). Every kind resolves to the same `Principal`, so the
authorization, rate limit and audit steps after it cannot tell them apart."""

from __future__ import annotations

from collections.abc import Callable

from vigil.auth.oauth.tokens import ACCESS_PREFIX
from vigil.auth.principal import Principal

Verify = Callable[[str, str | None], Principal]


class CredentialVerifier:
    def __init__(self, api_keys: Verify, access_tokens: Verify) -> None:
        self._api_keys, self._access_tokens = api_keys, access_tokens

    def verify(self, token: str, client_ip: str | None) -> Principal:
        if token.startswith(ACCESS_PREFIX):
            return self._access_tokens(token, client_ip)
        return self._api_keys(token, client_ip)
