"""Property-based requests generated from the API's own OpenAPI schema: no answer is a 5xx.

Every operation gets a batch of schemathesis-generated requests (valid and invalid path
ids, multipart bodies, headers) against the real app, database and broker, sent with a
valid API key of every scope (admin), so the requests reach the routes' own code.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import Case, openapi
from schemathesis.checks import not_a_server_error

from app.api.main import app
from tests.utils.keys import bearer, make_api_key

schema = openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def admin_key(database: str) -> str:
    return make_api_key("fuzz", ["admin"])


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_from_the_schema_makes_a_server_error(case: Case, admin_key: str) -> None:
    case.call_and_validate(headers=bearer(admin_key), checks=[not_a_server_error])
