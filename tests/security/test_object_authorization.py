"""S12, S13 object-level authorization matrix: two dealers x two environments. Every route that
names an object is tried by each of the three other tenants with the first tenant's ids: the
answer is 404, never data, and nothing changes. Listings never show another tenant's rows.

The routes and their bodies come from the scope matrix (tests/security/test_scope_matrix.py),
which the suite forces to cover every scoped route, so a new route joins this matrix too.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tests.security.test_scope_matrix import CASES, Case, World, snapshot
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.services import Services


@dataclass(frozen=True)
class Tenants:
    owner: factories.Credential
    others: tuple[factories.Credential, ...]


@pytest.fixture(scope="module")
def tenants(services: Services) -> Tenants:
    a, b = factories.dealer(services), factories.dealer(services)
    creds = [
        factories.credential(services, owner=dealer, environment=env)
        for dealer in (a, b)
        for env in (Environment.SANDBOX, Environment.PRODUCTION)
    ]
    return Tenants(creds[0], tuple(creds[1:]))


def world_ids(world: World) -> set[str]:
    """Every object id the world created (apps, keys, and each lazily created object)."""
    ids = {world.target.app.id, world.target.key_id}
    ids |= {v for k, v in vars(world).items() if k.endswith("_id") and isinstance(v, str)}
    return ids


OBJECT_ROUTES = [c for c in CASES if "{" in c.template]
LISTINGS = [c for c in CASES if "{" not in c.template and c.method == "GET"]


@pytest.mark.parametrize("case", OBJECT_ROUTES, ids=lambda c: f"{c.method} {c.template}")
def test_other_tenants_get_404_for_every_object_route(
    case: Case, tenants: Tenants, server: VigilServer, services: Services
) -> None:
    owner = tenants.owner
    world = World(services, factories.credential(services, owner=owner.dealer))
    path = case.path(world)
    ids = world_ids(world)
    before = snapshot(services, owner.dealer.id)
    for other in tenants.others:
        with server.client(other.token) as client:
            response = case.send(client, world)
        assert response.status_code == 404, (other.app.environment, response.text)
        assert response.json()["code"] == "not_found"
        assert not any(i in response.text for i in ids - set(path.split("/")))
    assert snapshot(services, owner.dealer.id) == before
    # The owner reaches the same object through the same route (a 409 for a second key is
    # still proof the object was found).
    with server.client(owner.token) as client:
        own = case.send(client, world)
    assert own.status_code in (200, 201, 409), own.text


@pytest.mark.parametrize("case", LISTINGS, ids=lambda c: f"{c.method} {c.template}")
def test_listings_never_show_another_tenants_rows(
    case: Case, tenants: Tenants, server: VigilServer, services: Services
) -> None:
    owner = tenants.owner
    world = World(services, factories.credential(services, owner=owner.dealer))
    for object_case in OBJECT_ROUTES:  # populate every kind of object the owner can have
        object_case.path(world)
    ids = world_ids(world)
    for other in tenants.others:
        with server.client(other.token) as client:
            response = client.get(case.path(world))
        assert response.status_code == 200, response.text
        leaked = {i for i in ids if i in response.text}
        assert leaked == set(), (other.app.environment, case.template)
    with server.client(owner.token) as client:
        own = client.get(case.path(world))
    assert own.status_code == 200
