"""The OpenAPI schema matches the behaviour: schemathesis sends schema-made requests (bounded) and checks answers."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
import base64  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serve_helpers import image_bytes, make_client  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def app(captioners):
    with make_client(captioners, api_key="k", max_beams=3) as client:
        assert client.app.state.pool.wait(60)
        yield client.app


def test_the_schema_declares_every_route_and_error(app):
    from fastapi.testclient import TestClient

    spec = TestClient(app).get("/openapi.json").json()
    assert set(spec["paths"]) == {"/", "/healthz", "/v1/models", "/v1/captions", "/v1/attention"}
    captions = spec["paths"]["/v1/captions"]["post"]
    assert set(captions["responses"]) == {"200", "400", "401", "403", "404", "413", "415", "422", "503"}
    assert set(captions["requestBody"]["content"]) == {"multipart/form-data", "application/json"}


def test_api_conforms_to_its_schema(app):
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tried, sent = [], [0]
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case):
            # every other case carries the key; the rest must get the declared 401, never a 5xx
            sent[0] += 1
            if sent[0] % 2:
                case.headers = {**(case.headers or {}), "Authorization": "Bearer k"}
            case.call_and_validate(checks=CHECKS)

        conforms()
        tried.append(operation.label)
    assert len(tried) == 5
    # generated images are random bytes; real ones must get a 200 that matches the declared response too
    png, key = image_bytes(), {"Authorization": "Bearer k"}
    good = [
        ("/v1/captions", "application/json", {"images": [base64.b64encode(png).decode()], "num_beams": 2}),
        ("/v1/captions", "multipart/form-data", {"image": [png], "model": "all", "num_beams": "2"}),
        ("/v1/attention", "multipart/form-data", {"image": [png], "model": "sat"}),
    ]
    for path, media_type, body in good:
        case = schema[path]["POST"].Case(media_type=media_type, body=body, headers=key)
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code == 200, response.text
    case = schema["/v1/attention"]["POST"].Case(
        media_type="application/json",
        query={"format": "json"},
        body={"images": [base64.b64encode(png).decode()]},
        headers=key,
    )
    assert case.call_and_validate(checks=CHECKS).json()["model"] == "sat"
