"""Property-based run of schemathesis against the served /openapi.json: whatever it sends, no
answer is a server error, and every answer matches the document (status, type, schema)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


@pytest.fixture(scope="module")
def served_schema(api):
    auth = {"Authorization": f"Bearer {api.token}"}
    # a body over the size bound is rejected with 413 before it is even parsed
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    )
    return schemathesis.openapi.from_url(
        f"{api.base_url}/openapi.json", headers=auth, config=config
    )


# the event stream never ends by design; it is tested in test_api_events.py
schema = schemathesis.pytest.from_fixture("served_schema").exclude(
    path="/api/v1/events/{project_id}"
)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_answers_match_the_document(case, api):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api.token}"},
        timeout=30,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_headers_conformance,
            checks.response_schema_conformance,
            checks.negative_data_rejection,
        ],
    )
