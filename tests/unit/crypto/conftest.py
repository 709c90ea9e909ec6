"""Fixtures for the crypto unit tests: data keys made directly, no KMS involved."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from vigil.crypto.binding import Binding
from vigil.crypto.datakey import DataKey
from vigil.crypto.material import SecretKey

MakeKey = Callable[..., DataKey]


@pytest.fixture
def make_key() -> MakeKey:
    def make(
        *, dealer_id: str = "dlr_a", purpose: str = "records", version: int = 1, budget: int = 1000
    ) -> DataKey:
        return DataKey(
            SecretKey(os.urandom(32)),
            keyset_id=os.urandom(16),
            version=version,
            dealer_id=dealer_id,
            purpose=purpose,
            budget=budget,
        )

    return make


@pytest.fixture
def binding() -> Binding:
    return Binding("dlr_a", "production", "alarm", "alm_1", "details")
