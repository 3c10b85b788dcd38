"""Every service's HTTP API fuzzed from its own OpenAPI document (schemathesis): valid and
invalid requests alike must get an answer in time, never a 5xx, and every refusal is a 4xx that
says why. Runs against the four services as real processes, with a fresh credential of a role
the service's routes admit on every request (so no case is stopped by the rate limit)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err

from shared.auth import Role
from tests.harness import ServiceProcess, running_services

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 30
ENDLESS = {"/v1/board/events"}
"""Event streams answer at once but never end: the board's browser test covers this one."""
ROLE_FOR = {
    "intake": (Role.FRONTEND, "fuzz-portal"),
    "routing": (Role.ADMIN, "fuzz-admin"),
    "sla": (Role.SUPERVISOR, "fuzz-supervisor"),
    "notify": (Role.ADMIN, "fuzz-admin"),
}


@pytest.fixture(scope="module")
def suite(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("fuzz-service-logs")
    with running_services(list(ROLE_FOR), service_env, logs) as found:
        yield found


def fuzz(
    process: ServiceProcess, credential: Callable[[Role, str], dict[str, str]]
) -> dict[str, int]:
    """Every operation of the service, valid and invalid cases; the answers' statuses, counted.

    Driven through hypothesis directly: schemathesis's pytest integration reads a private
    attribute that pytest 9 no longer has."""
    schema = schemathesis.openapi.from_url(f"{process.url}/openapi.json")
    statuses: dict[str, int] = {}
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        if result.ok().path not in ENDLESS:
            operations.append(result.ok())
    assert operations
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(mode))
            def answer_clearly(case: Case[Any]) -> None:
                response = case.call_and_validate(
                    headers=credential(*ROLE_FOR[process.name]),
                    checks=[not_a_server_error],
                    timeout=10,
                )
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                assert response.status_code < 500, (case.as_curl_command(), response.text)
                if response.status_code >= 400:
                    body: Any = response.json()
                    assert isinstance(body, dict), response.text
                    assert body.get("detail"), f"a {response.status_code} that does not say why"

            try:
                answer_clearly()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to make.
                assert mode is GenerationMode.NEGATIVE, operation.label
    return statuses


FUZZ = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    max_examples=EXAMPLES_PER_OPERATION,
    database=None,
)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", sorted(ROLE_FOR))
def test_the_api_answers_every_request_clearly(
    suite: dict[str, ServiceProcess],
    credential: Callable[[Role, str], dict[str, str]],
    service: str,
) -> None:
    statuses = fuzz(suite[service], credential)
    assert "422" in statuses, "the invalid cases reached validation"
    assert any(status.startswith("2") for status in statuses), statuses
