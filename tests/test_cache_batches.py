"""Result cache, coalescing of identical requests, and batches (fake ComfyUI)."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from comfygate.jobs.cache import cache_key
from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp, body
from tests.helpers import wait_for
from tests.test_jobs_api import finished, submit

SEEDED = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 7}


def generate(client: FlaskClient, payload: dict[str, Any]) -> Any:
    resp = client.post("/v1/generate", json=payload)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp


def test_same_request_is_answered_from_the_cache(client: FlaskClient, fake: FakeComfyUI) -> None:
    first = generate(client, SEEDED)
    again = generate(client, {**SEEDED, "cfg": 7})  # 7 == the default 7.0
    assert again.data == first.data
    assert again.headers["X-Job-Id"] != first.headers["X-Job-Id"]
    assert len(fake.submissions) == 1
    assert fake.history_count == 1  # ComfyUI ran it once
    job = body(client.get(f"/v1/jobs/{again.headers['X-Job-Id']}"))
    assert job["cached"] is True
    assert job["attempts"] == 0
    assert job["status"] == "succeeded"


def test_random_seed_and_cache_false_are_not_served_from_the_cache(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    unseeded = {k: v for k, v in SEEDED.items() if k != "seed"}
    generate(client, unseeded)
    generate(client, unseeded)
    assert len(fake.submissions) == 2
    generate(client, SEEDED)
    generate(client, {**SEEDED, "cache": False})
    assert len(fake.submissions) == 4
    assert (
        body(client.post("/v1/generate", json=SEEDED, headers={"Accept": "application/json"}))[
            "cached"
        ]
        is True
    )


def test_a_fixed_default_seed_makes_requests_cacheable(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = make_app([fake.url], template_defaults={"txt2img": {"seed": 1}}).test_client()
    unseeded = {k: v for k, v in SEEDED.items() if k != "seed"}
    generate(client, unseeded)
    generate(client, unseeded)
    assert len(fake.submissions) == 1


def test_a_changed_template_invalidates_the_cache(
    fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    doc = json.loads(
        (Path(__file__).parent.parent / "src/comfygate/templates/builtin/solid.json").read_text()
    )
    doc["name"] = "mine"
    (templates / "mine.json").write_text(json.dumps(doc))
    data = str(tmp_path / "data")
    client = make_app([fake.url], templates_dir=str(templates), data_dir=data).test_client()
    generate(client, {"template": "mine"})
    generate(client, {"template": "mine"})
    assert len(fake.submissions) == 1
    client.application.extensions["comfygate"].stop()
    doc["workflow"]["1"]["inputs"]["color"] = 1  # an edit the parameters do not show
    (templates / "mine.json").write_text(json.dumps(doc))
    client = make_app([fake.url], templates_dir=str(templates), data_dir=data).test_client()
    generate(client, {"template": "mine"})
    assert len(fake.submissions) == 2


def test_the_cache_survives_a_restart(fake: FakeComfyUI, make_app: MakeApp, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    first = make_app([fake.url], data_dir=data)
    generate(first.test_client(), SEEDED)
    first.extensions["comfygate"].stop()
    generate(make_app([fake.url], data_dir=data).test_client(), SEEDED)
    assert len(fake.submissions) == 1


def test_vanished_files_are_not_served(app: Flask, fake: FakeComfyUI) -> None:
    client = app.test_client()
    first = generate(client, SEEDED)
    gateway = app.extensions["comfygate"]
    # The entry is written as the job ends, after its answer.
    assert wait_for(lambda: gateway.jobs.cache.size() > 0)
    [key] = [d for d in gateway.storage.root.iterdir() if len(d.name) == 64]  # the entry's
    # The entry's files and the job's own (an identical request is answered from either).
    for path in [*key.iterdir(), *(gateway.storage.root / first.headers["X-Job-Id"]).iterdir()]:
        path.unlink()
    again = generate(client, SEEDED)
    assert len(fake.submissions) == 2
    assert body(client.get(f"/v1/jobs/{again.headers['X-Job-Id']}"))["cached"] is False


def test_files_that_vanish_after_an_entry_was_served_are_not_served(
    app: Flask, fake: FakeComfyUI
) -> None:
    """The entry's files are checked once per process; a hit afterwards whose files went away
    runs the job instead, and the entry it makes is served again."""
    client = app.test_client()
    gateway = app.extensions["comfygate"]
    first = generate(client, SEEDED)
    # The entry is written as the job ends, after its answer: until then an identical
    # request is answered from the job's own files, and the entry's files are not checked.
    key = gateway.jobs.store.get(first.headers["X-Job-Id"]).cache_key
    assert wait_for(lambda: gateway.jobs.store.cache_get(key) is not None)
    hit = generate(client, SEEDED)  # the entry's files checked, and kept as checked
    assert body(client.get(f"/v1/jobs/{hit.headers['X-Job-Id']}"))["cached"] is True
    [key] = [d for d in gateway.storage.root.iterdir() if len(d.name) == 64]
    for path in key.iterdir():
        path.unlink()
    again = generate(client, SEEDED)
    assert len(fake.submissions) == 2
    assert body(client.get(f"/v1/jobs/{again.headers['X-Job-Id']}"))["cached"] is False
    last = generate(client, SEEDED)
    assert body(client.get(f"/v1/jobs/{last.headers['X-Job-Id']}"))["cached"] is True
    assert len(fake.submissions) == 2


def test_eviction_by_size_least_recently_used_first(fake: FakeComfyUI, make_app: MakeApp) -> None:
    app = make_app([fake.url])
    client = app.test_client()
    solid = {"template": "solid", "width": 16, "height": 16}
    jobs = app.extensions["comfygate"].jobs
    cache = jobs.cache

    def kept(resp: TestResponse) -> str:
        """The entry's key; it is written as the job ends, after the answer."""
        key = jobs.store.get(resp.headers["X-Job-Id"]).cache_key
        assert wait_for(lambda: jobs.store.cache_get(key) is not None)
        return str(key)

    one = generate(client, {**solid, "color": 1})
    two = generate(client, {**solid, "color": 2})
    kept(one)
    key_two = kept(two)
    size = len(one.data)
    assert len(two.data) == size  # solid images of one size: equal files
    assert cache.size() == 2 * size
    generate(client, {**solid, "color": 1})  # 1 is now the most recently used
    cache.max_bytes = 2 * size  # room for two
    kept(generate(client, {**solid, "color": 3}))  # evicts 2, the least recently used
    assert wait_for(lambda: jobs.store.cache_get(key_two) is None)  # evicting follows the put
    assert len(fake.submissions) == 3
    generate(client, {**solid, "color": 1})
    generate(client, {**solid, "color": 3})
    assert len(fake.submissions) == 3  # both still cached
    kept(generate(client, {**solid, "color": 2}))
    assert len(fake.submissions) == 4  # evicted: ran again
    assert wait_for(lambda: cache.size() <= cache.max_bytes)  # evicting follows the put


def test_ten_concurrent_identical_requests_run_once(app: Flask, fake: FakeComfyUI) -> None:
    fake.hold()
    results: list[bytes] = []
    errors: list[bytes] = []

    def call() -> None:
        resp = app.test_client().post("/v1/generate", json=SEEDED)
        (results if resp.status_code == 200 else errors).append(resp.data)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    events = app.extensions["comfygate"].jobs.events
    assert wait_for(lambda: events.subscriber_count() == 10)  # all ten are waiting
    fake.release()
    for t in threads:
        t.join(10)
    assert errors == []
    assert len(results) == 10
    assert len(set(results)) == 1
    assert len(fake.submissions) == 1


def test_cache_key_normalises_numbers_and_order() -> None:
    assert cache_key("t", {"a": 1, "cfg": 7.0}) == cache_key("t", {"cfg": 7, "a": 1})
    assert cache_key("t", {"cfg": 7.5}) != cache_key("t", {"cfg": 7})
    assert cache_key("t", {"a": 1}) != cache_key("u", {"a": 1})


def test_cache_hits_are_counted(client: FlaskClient) -> None:
    generate(client, SEEDED)
    generate(client, SEEDED)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'comfygate_cache_lookups_total{result="hit"} 1.0' in text
    assert 'comfygate_cache_lookups_total{result="miss"} 1.0' in text


# --- batches -------------------------------------------------------------------------------


def test_batch_of_prompts_gives_one_archive(client: FlaskClient, fake: FakeComfyUI) -> None:
    resp = client.post(
        "/v1/batches",
        json={
            "prompts": ["a cat", "a dog", "a fox"],
            "width": 64,
            "height": 64,
            "steps": 2,
            "seed": 3,
        },
    )
    assert resp.status_code == 202
    created = body(resp)
    assert resp.headers["Location"] == f"/v1/batches/{created['id']}"
    assert len(created["jobs"]) == 3
    for job_id in created["jobs"]:
        finished(client, job_id)
    batch = body(client.get(f"/v1/batches/{created['id']}"))
    assert batch["counts"]["succeeded"] == 3
    assert batch["done"] is True
    assert [j["params"]["prompt"] for j in batch["jobs"]] == ["a cat", "a dog", "a fox"]
    archive = client.get(batch["archive_url"])
    assert archive.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.data)) as zf:
        assert zf.namelist() == ["0000-9-0.png", "0001-9-0.png", "0002-9-0.png"]
        assert zf.read("0001-9-0.png").startswith(b"\x89PNG")
    assert len(fake.submissions) == 3


def test_batch_items_with_shared_parameters(client: FlaskClient) -> None:
    created = body(
        client.post(
            "/v1/batches",
            json={
                "template": "solid",
                "width": 8,
                "items": [{"color": 0}, {"color": 255, "width": 16}],
            },
        )
    )
    jobs = [finished(client, j) for j in created["jobs"]]
    assert [j["params"]["width"] for j in jobs] == [8, 16]
    assert [j["batch_index"] for j in jobs] == [0, 1]


def test_one_bad_item_refuses_the_whole_batch(client: FlaskClient, fake: FakeComfyUI) -> None:
    resp = client.post(
        "/v1/batches", json={"template": "solid", "items": [{"color": 0}, {"color": -1}, {}]}
    )
    assert resp.status_code == 400
    error = body(resp)["error"]
    assert error["details"]["index"] == 1
    assert error["details"]["field"] == "color"
    assert "item 1" in error["message"]
    assert fake.submissions == []
    assert body(client.get("/v1/jobs"))["jobs"] == []


def test_batch_size_limit_and_shape(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], max_batch_items=2).test_client()
    too_many = client.post("/v1/batches", json={"prompts": ["a", "b", "c"]})
    assert too_many.status_code == 400
    assert "at most 2" in body(too_many)["error"]["message"]
    bad: dict[str, Any]
    for bad in (
        {},
        {"prompts": []},
        {"prompts": "a"},
        {"items": [1]},
        {"items": [{}], "prompts": ["a"]},
    ):
        assert client.post("/v1/batches", json=bad).status_code == 400


def test_cancelling_a_batch_cancels_its_unfinished_jobs(
    client: FlaskClient, fake: FakeComfyUI
) -> None:
    fake.hold()
    created = body(
        client.post(
            "/v1/batches", json={"template": "solid", "items": [{"color": i} for i in range(4)]}
        )
    )
    batch = body(client.delete(f"/v1/batches/{created['id']}"))
    assert batch["counts"]["cancelled"] == 4
    fake.release()
    assert client.get("/v1/batches/nope").status_code == 404
    assert client.get("/v1/batches/nope/archive").status_code == 404


def test_batch_items_spread_over_backends(make_app: MakeApp) -> None:
    with FakeComfyUI() as a, FakeComfyUI() as b:
        a.service_time_s = b.service_time_s = 0.2
        a.caching = b.caching = False
        client = make_app([a.url, b.url], max_in_flight_per_backend=1).test_client()
        created = body(
            client.post(
                "/v1/batches", json={"template": "solid", "items": [{"color": i} for i in range(4)]}
            )
        )
        for job_id in created["jobs"]:
            finished(client, job_id)
        assert len(a.submissions) == len(b.submissions) == 2


def test_async_jobs_share_the_cache(client: FlaskClient, fake: FakeComfyUI) -> None:
    first = finished(client, submit(client, SEEDED)["id"])
    second = submit(client, SEEDED)
    assert second["status"] == "succeeded"
    assert second["cached"] is True
    assert second["outputs"][0]["size"] == first["outputs"][0]["size"]
    assert len(fake.submissions) == 1


def test_a_batch_belongs_to_the_key_that_made_it(fake: FakeComfyUI, make_app: MakeApp) -> None:
    client = make_app([fake.url], api_keys="key-a,key-b").test_client()
    a = {"Authorization": "Bearer key-a"}
    b = {"X-API-Key": "key-b"}
    created = body(client.post("/v1/batches", json={"template": "solid", "items": [{}]}, headers=a))
    for method, suffix in (("get", ""), ("get", "/archive"), ("delete", "")):
        other = getattr(client, method)(f"/v1/batches/{created['id']}{suffix}", headers=b)
        assert other.status_code == 404, (method, suffix)
    assert client.get(f"/v1/batches/{created['id']}", headers=a).status_code == 200
    assert client.get(f"/v1/batches/{created['id']}").status_code == 401


def test_generate_refuses_a_webhook(client: FlaskClient) -> None:
    resp = client.post(
        "/v1/generate", json={"template": "solid", "webhook_url": "https://example.com/hook"}
    )
    assert resp.status_code == 400
    assert body(resp)["error"]["details"]["field"] == "webhook_url"


def test_an_entry_evicted_during_a_hit_runs_the_job_instead(
    app: Flask, client: FlaskClient, fake: FakeComfyUI
) -> None:
    first = generate(client, SEEDED)
    jobs = app.extensions["comfygate"].jobs
    storage = jobs.storage
    key = jobs.store.get(first.headers["X-Job-Id"]).cache_key
    assert wait_for(lambda: jobs.store.cache_get(key) is not None)  # written as the job ended
    real_copy = storage.copy

    def vanished(*args: Any) -> None:
        storage.copy = real_copy  # only this once
        # Evicted, and the job that made it swept, between the lookup and the copies.
        jobs.cache.drop(key)
        storage.delete_group(first.headers["X-Job-Id"])
        raise FileNotFoundError("evicted meanwhile")

    storage.copy = vanished
    again = generate(client, SEEDED)
    assert again.headers["Content-Type"] == first.headers["Content-Type"] == "image/png"
    assert len(fake.submissions) == 2  # it ran on ComfyUI
    assert body(client.get(f"/v1/jobs/{again.headers['X-Job-Id']}"))["cached"] is False


def test_an_idempotent_replay_of_a_cached_request_leaves_no_files_behind(
    app: Flask, client: FlaskClient
) -> None:
    generate(client, SEEDED)
    headers = {"Idempotency-Key": "order-1"}
    one = body(client.post("/v1/jobs", json=SEEDED, headers=headers))
    two = body(client.post("/v1/jobs", json=SEEDED, headers=headers))
    assert two["id"] == one["id"]
    assert one["cached"] is True
    outputs = app.extensions["comfygate"].jobs.storage.root
    jobs = {j["id"] for j in body(client.get("/v1/jobs"))["jobs"]}
    # The job folders (a cached entry, its 64-hex key, is kept apart from every job).
    assert {d.name for d in outputs.iterdir() if len(d.name) == 32} == jobs


def test_cached_results_are_served_while_every_backend_is_down(
    fake: FakeComfyUI, make_app: MakeApp
) -> None:
    client = make_app([fake.url]).test_client()
    first = generate(client, SEEDED)  # txt2img, its checkpoint the backend's default
    solid = generate(client, {"template": "solid", "width": 8, "height": 8})
    fake.stop()
    assert wait_for(lambda: client.get("/readyz").status_code == 503)

    again = generate(client, SEEDED)
    assert again.data == first.data
    assert body(client.get(f"/v1/jobs/{again.headers['X-Job-Id']}"))["cached"] is True
    assert generate(client, {"template": "solid", "width": 8, "height": 8}).data == solid.data
    # What the cache cannot answer is a 503, as before; a bad request is still a 400.
    for payload in ({**SEEDED, "seed": 8}, {**SEEDED, "cache": False}, {"prompt": "x"}):
        resp = client.post("/v1/generate", json=payload)
        assert resp.status_code == 503, payload
        assert body(resp)["error"]["code"] == "backend_unavailable"
    assert client.post("/v1/generate", json={**SEEDED, "steps": 0}).status_code == 400
