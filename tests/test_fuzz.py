"""Schema fuzzing: schemathesis generates requests from the gateway's own OpenAPI document
and sends them over real HTTP to the app served by waitress (the fake ComfyUI behind it).
Whatever comes in, the answer is never a 5xx other than the documented 502/503/504, and always
matches the document (status code, content type, body schema, headers).

Bounded to a few hundred cases (``MAX_EXAMPLES`` per operation, about 30 operations) so it
stays well under a minute. Image URLs never reach the network: the resolver refuses every name.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from comfygate.api.images import RESOLVER
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp
from tests.live import serve

MAX_EXAMPLES = 15
DOCUMENTED_5XX = frozenset({502, 503, 504})


def _no_dns(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def fuzz_app(fake: FakeComfyUI, make_app: MakeApp) -> Flask:
    app = make_app(
        [fake.url],
        allow_raw_workflows=True,
        # Keep every generated job cheap on the fake: bigger ones are 400s (documented).
        max_pixels=128 * 128,
        max_steps=4,
        max_batch_size=2,
        request_timeout_s=5.0,
        max_body_mb=2.0,
    )
    app.extensions[RESOLVER] = _no_dns
    return app


def _check(case: Case[Any], seen: list[int]) -> None:
    seen.append(1)
    response = case.call(timeout=30)
    status = response.status_code
    assert status < 500 or status in DOCUMENTED_5XX, (
        f"{case.method} {case.formatted_path}: {status} {response.text[:300]}"
    )
    # Schema-valid is not always acceptable (a cost limit, an image that is not one, a model
    # no backend has: 400s the document lists), so positive_data_acceptance is left out.
    case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance])


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_answers_garbage_with_documented_answers(
    fuzz_app: Flask, mode: GenerationMode
) -> None:
    # (schemathesis's own pytest integration needs pytest internals that pytest 9 dropped:
    # the operations are driven with hypothesis directly.)
    seen: list[int] = []
    with serve(fuzz_app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [
            result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)
        ]
        assert len(operations) > 20
        for operation in operations:

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case[Any]) -> None:
                _check(case, seen)

            try:
                run()
            except Unsatisfiable:
                # Nothing invalid can be made for it (no parameters, no body): fine.
                assert mode is GenerationMode.NEGATIVE
    assert len(seen) >= 150, len(seen)
