"""Property-based requests generated from the API's own OpenAPI schema: no answer is a 5xx.

Every operation gets a batch of schemathesis-generated requests (valid and invalid path
ids, multipart bodies, headers) against the real app, database and broker.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from schemathesis import Case, openapi
from schemathesis.checks import not_a_server_error

from app.api.main import app

schema = openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_from_the_schema_makes_a_server_error(case: Case, database: str) -> None:
    case.call_and_validate(checks=[not_a_server_error])
