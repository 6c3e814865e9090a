"""Schemathesis against the compliance API's own OpenAPI schema (issue 7, "Bad input"):
every generated request to every operation, valid and invalid alike, sent with an admin
token, gets an answer below 500, on both backends ("all of the above passes on both backends");
a bounded run (20 examples per operation and mode, derandomized) keeps it quick.

No route is excluded: the generated addresses never name an account (the store has none),
so an erasure, a hold or a consent change cannot remove the token the run uses.

The operations are driven by hand with Hypothesis rather than by
``schemathesis.pytest.from_fixture``, whose subtests do not run under pytest 9."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from adapters.bootstrap import Container
from api.main import create_app
from domain.application.context import acting

FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def test_no_generated_request_gets_a_server_error(store: Container) -> None:
    with acting("admin:test", protocol="test", purpose="testing"):
        _, token = store.app.create_token("fuzz", ["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(store))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10
    failures: list[str] = []
    for operation in operations:
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE))

        @FUZZ
        @given(case=cases)
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            no_server_error()
        except Exception as error:  # noqa: BLE001 - collected, reported below
            # Hypothesis prints the shrunk falsifying request to the captured output.
            failures.append(f"{operation.label}: {type(error).__name__}: {error}")
    assert not failures, "\n\n".join(failures)
