"""GET /metrics as Prometheus reads it (prometheus_client's own parser): stable series for a
backend whatever its state, build info, process metrics, and job costs by template."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from comfygate import __version__
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.test_jobs_api import finished, submit


def scrape(client: FlaskClient) -> dict[str, list[Sample]]:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    families = text_string_to_metric_families(resp.get_data(as_text=True))
    return {family.name: family.samples for family in families}


def values(
    samples: list[Sample], name: str | None = None
) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value for s in samples if name is None or s.name == name
    }


def test_a_backend_keeps_one_up_series_through_a_state_change(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = make_app([f"gpu={fake.url}"]).test_client()
    before = scrape(client)
    assert values(before["comfygate_backend_up"]) == {(("backend", "gpu"),): 1.0}
    assert values(before["comfygate_backend_status"]) == {
        (("backend", "gpu"), ("status", "healthy")): 1.0,
        (("backend", "gpu"), ("status", "recovering")): 0.0,
        (("backend", "gpu"), ("status", "unhealthy")): 0.0,
    }
    fake.stop()
    assert wait_for(
        lambda: body(client.get("/v1/backends"))["backends"][0]["status"] == "unhealthy", 15
    )
    after = scrape(client)
    assert values(after["comfygate_backend_up"]) == {(("backend", "gpu"),): 0.0}
    assert (
        values(after["comfygate_backend_status"])[(("backend", "gpu"), ("status", "unhealthy"))]
        == 1.0
    )
    assert sum(values(after["comfygate_backend_status"]).values()) == 1.0


def test_build_info_and_process_metrics(client: FlaskClient) -> None:
    families = scrape(client)
    assert values(families["comfygate_build_info"]) == {(("version", __version__),): 1.0}
    assert values(families["process_resident_memory_bytes"])[()] > 0
    assert values(families["process_open_fds"])[()] > 0
    assert "process_cpu_seconds" in families
    assert "python_info" in families


def test_job_costs_are_labelled_by_template(client: FlaskClient) -> None:
    finished(client, submit(client, {"template": "solid"})["id"])
    finished(client, submit(client, {"template": "solid", "color": 1})["id"])
    finished(client, submit(client, {"prompt": "a cat", "width": 64, "height": 64})["id"])
    families = scrape(client)
    done = values(families["comfygate_jobs_finished"], "comfygate_jobs_finished_total")
    assert done == {
        (("status", "succeeded"), ("template", "solid")): 2.0,
        (("status", "succeeded"), ("template", "txt2img")): 1.0,
    }
    for name in ("queue_wait", "execution", "output_transfer"):
        family = f"comfygate_job_{name}_seconds"
        counts = values(families[family], f"{family}_count")
        assert counts == {(("template", "solid"),): 2.0, (("template", "txt2img"),): 1.0}
