"""Schemathesis over the whole published OpenAPI document, against the running server over TLS
with a fully scoped sandbox key: no 5xx, every response conforms to the document (status codes,
content types, bodies, headers), and input the document forbids is rejected.

Not checked: that every schema-valid request is accepted. The document cannot express the
semantic rules the services enforce (an IANA time zone, a CIDR network, an id that exists), so
such requests are rightly refused with a 422 problem document.

The operations are driven from inside one test (schemathesis' pytest loader cannot read a
session fixture under pytest 9), each with valid and with invalid input. `make test` keeps the
example count modest; `make fuzz` sets VIGIL_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import os
import ssl

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from tests.support import factories
from tests.support.server import VigilServer

from vigil.services import Services

EXAMPLES = int(os.environ.get("VIGIL_FUZZ_EXAMPLES", "10"))


def test_api_conforms_to_its_document(server: VigilServer, services: Services) -> None:
    tls = ssl.create_default_context(cafile=server.ca_pem)
    document = httpx.get(f"{server.base_url}/openapi.json", verify=tls).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=server.base_url)
    # Every call carries the test's own key (below), so a generated Authorization header, or
    # its absence as "invalid input", would be replaced and prove nothing; the edge's
    # authentication has its own tests (tests/security).
    schema.config.generation.update(with_security_parameters=False)
    session = requests.Session()
    session.verify = str(server.ca_pem)
    auth = {"Authorization": f"Bearer {factories.credential(services).token}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(
                session=session,
                headers=auth,
                verify=str(server.ca_pem),
                excluded_checks=[positive_data_acceptance],
            )

        try:
            exercise()
        # Collect every operation's findings, then report them all.
        except (Exception, BaseExceptionGroup) as failure:
            failures[operation.label] = str(failure)[:2000]
    assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
