"""Schemathesis against the OpenAPI document: no 5xx, responses as documented, auth enforced.

Hypothesis generates requests for every operation from the schema itself (bounded: a few
dozen examples per operation), against the real app on SQLite and the filesystem broker,
with API keys on. Positive cases carry a valid key; the same cases without one must get 401.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from service.main import create_app
from tests.service.conftest import make_settings

KEY = "key-schemathesis-0123456789"
EXAMPLES = 20
# Every check but positive data acceptance: a schema cannot say that a file must be a
# `.pt2` archive or an `.npz`, so a schema-valid upload of random bytes rightly gets 422.
EXCLUDED = [checks.positive_data_acceptance]


def _check_operation(operation: Any) -> None:
    strategy = operation.as_strategy()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=EXCLUDED)
        if case.path.startswith("/v1/"):
            anonymous = case.call(headers={"Authorization": ""})
            assert anonymous.status_code == 401, (case.method, case.formatted_path)

    run()


def test_every_operation_conforms_to_the_schema(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data", api_keys=f"fuzz={KEY}"))
    with TestClient(app):  # the lifespan: stores, migrations, queue
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 14
        for operation in operations:
            _check_operation(operation)
