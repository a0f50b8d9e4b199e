"""The fake ComfyUI answers like the recorded real ComfyUI 0.3.75 (samples in comfyui-samples).

Each test replays recorded requests against a fresh :class:`FakeComfyUI` and compares status
codes, content types, JSON key structure and websocket message type sequences with the
recordings, kept in the repository under ``tests/fixtures/comfyui-samples``.
"""

from __future__ import annotations

import copy
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import websocket
from PIL import Image

from comfygate.testing.fake_comfyui import FakeComfyUI

SAMPLES = Path(__file__).parent / "fixtures" / "comfyui-samples"

CLIENT_ID = "32a9e38fc3774ce7947563b723d8c63c"
WAIT_S = 5.0

Frame = dict[str, Any]


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


def sample_by_number(number: int) -> dict[str, Any]:
    (path,) = SAMPLES.glob(f"{number:02d}-*.json")
    return sample(path.name)


def recorded_frames(name: str) -> list[Frame]:
    frames: list[Frame] = json.loads((SAMPLES / name).read_text())
    return frames


def frame_type(frame: Frame) -> str:
    if frame["kind"] == "binary":
        return f"BIN{frame['msg']['event_type']}"
    return str(frame["msg"]["type"])


def shape(value: Any) -> Any:
    """JSON key structure: dict keys recursively, lists of scalars as one token."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return "list"
        return [shape(v) for v in value]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str"


def history_entry(body: dict[str, Any]) -> dict[str, Any]:
    (entry,) = body.values()
    result: dict[str, Any] = entry
    return result


def by_id(body: Any) -> Any:
    """Structure of a ``{prompt_id: entry}`` answer (ids differ from the recording)."""
    return [shape(entry) for entry in body.values()]


def skeleton(body: Any) -> Any:
    """Structure of a /history listing whatever the prompts were."""
    return {(tuple(entry), tuple(entry["status"]), len(entry["prompt"])) for entry in body.values()}


def assert_like_recording(
    response: requests.Response,
    recorded: dict[str, Any],
    structure: Callable[[Any], Any] = shape,
) -> Any:
    """Same status, content type and JSON key structure as the recorded response."""
    expected = recorded["response"]
    assert response.status_code == expected["status"]
    assert response.headers.get("Content-Type", "") == expected["content_type"]
    if expected["content_type"].startswith("application/json"):
        body = response.json()
        assert structure(body) == structure(expected["body"])
        return body
    if expected["content_type"] == "":
        assert response.content == b""
    return response.text


class Http:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=WAIT_S, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, timeout=WAIT_S, **kwargs)

    def prompt(self, body: dict[str, Any]) -> str:
        response = self.post("/prompt", json=body)
        assert response.status_code == 200, response.text
        prompt_id: str = response.json()["prompt_id"]
        return prompt_id

    def history(self, prompt_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.get(f"/history/{prompt_id}").json()
        return body


class Ws:
    """A websocket-client connection that records frames like the ws-*.json samples."""

    def __init__(self, base: str, client_id: str, path: str = "/ws") -> None:
        url = base.replace("http://", "ws://") + f"{path}?clientId={client_id}"
        self.conn: Any = cast(Any, websocket.WebSocket())
        try:
            self.conn.connect(url, timeout=WAIT_S)
        except Exception:
            self.conn.shutdown()  # websocket-client leaves the socket open on a refused upgrade
            raise
        hello = self.recv()
        assert frame_type(hello) == "status"
        assert hello["msg"]["data"]["sid"] == client_id

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send(json.dumps(message))

    def recv(self, timeout: float = WAIT_S) -> Frame:
        self.conn.settimeout(timeout)
        opcode, data = self.conn.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise websocket.WebSocketConnectionClosedException("closed by the server")
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return {"kind": "binary", "msg": {"event_type": int.from_bytes(data[:4], "big")}}
        return {"kind": "text", "msg": json.loads(data)}

    def until(self, stop: Callable[[Frame], bool], timeout: float = WAIT_S) -> list[Frame]:
        deadline = time.monotonic() + timeout
        frames: list[Frame] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no final frame; got {[frame_type(f) for f in frames]}")
            frames.append(self.recv(remaining))
            if stop(frames[-1]):
                return frames

    def close(self) -> None:
        self.conn.close()
        self.conn.shutdown()  # after a close frame from the server, close() is a no-op


def is_done(prompt_id: str) -> Callable[[Frame], bool]:
    """The last frame the real server sends for a prompt: executing with node null."""

    def stop(frame: Frame) -> bool:
        msg = frame["msg"]
        return (
            frame["kind"] == "text"
            and msg["type"] == "executing"
            and msg["data"]["node"] is None
            and msg["data"]["prompt_id"] == prompt_id
        )

    return stop


def is_type(kind: str) -> Callable[[Frame], bool]:
    return lambda frame: frame_type(frame) == kind


def assert_same_frames(got: list[Frame], recorded: list[Frame]) -> None:
    """Same message type sequence, and the same data keys frame by frame."""
    assert [frame_type(f) for f in got] == [frame_type(f) for f in recorded]
    for mine, theirs in zip(got, recorded, strict=True):
        if mine["kind"] == "text":
            assert shape(mine["msg"]) == shape(theirs["msg"]), frame_type(mine)


def recorded_body(number: int) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(sample_by_number(number)["request"]["json"])
    return body


def with_client(body: dict[str, Any], client_id: str = CLIENT_ID) -> dict[str, Any]:
    return {**body, "client_id": client_id}


def sd_body(text: str, seed: int, steps: int, size: int = 64) -> dict[str, Any]:
    body = recorded_body(54)
    body["prompt"]["6"]["inputs"]["text"] = text
    body["prompt"]["3"]["inputs"].update(seed=seed, steps=steps)
    body["prompt"]["5"]["inputs"].update(width=size, height=size)
    body["client_id"] = CLIENT_ID
    return body


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as server:
        yield server


@pytest.fixture
def http(fake: FakeComfyUI) -> Iterator[Http]:
    client = Http(fake.url)
    yield client
    client.session.close()


Connect = Callable[..., Ws]


@pytest.fixture
def connect(fake: FakeComfyUI) -> Iterator[Connect]:
    opened: list[Ws] = []

    def open_ws(client_id: str = CLIENT_ID, path: str = "/ws") -> Ws:
        ws = Ws(fake.url, client_id, path)
        opened.append(ws)
        return ws

    yield open_ws
    for ws in opened:
        ws.close()


# ------------------------------------------------------------------------------------------
# read-only routes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number", [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 80], ids=lambda n: f"sample-{n:02d}"
)
def test_get_routes_match_recordings(http: Http, number: int) -> None:
    recorded = sample_by_number(number)
    body = assert_like_recording(http.get(recorded["request"]["path"]), recorded)
    if number != 1:  # system_stats holds machine figures
        assert body == recorded["response"]["body"]


def test_object_info_has_the_recorded_entries(http: Http) -> None:
    recorded = sample("02-object_info_selected.json")
    response = http.get("/object_info")
    assert response.status_code == recorded["response"]["status"]
    assert response.headers["Content-Type"] == recorded["response"]["content_type"]
    body = response.json()
    for name, entry in recorded["response"]["body_selected"].items():
        assert body[name] == entry, name
    assert body["VAEEncode"].keys() == body["ImageInvert"].keys()
    assert body["VAEEncode"]["input_order"]["required"] == ["pixels", "vae"]


def test_checkpoint_choices_come_from_the_constructor() -> None:
    with FakeComfyUI(checkpoints=["a.safetensors", "b.safetensors"]) as server:
        response = requests.get(f"{server.url}/object_info/CheckpointLoaderSimple", timeout=WAIT_S)
        choices = response.json()["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        assert choices == ["a.safetensors", "b.safetensors"]
        response = requests.get(f"{server.url}/models/checkpoints", timeout=WAIT_S)
        assert response.json() == ["a.safetensors", "b.safetensors"]


# ------------------------------------------------------------------------------------------
# the model-free prompt, its cached re-run, no client_id, custom prompt_id
# ------------------------------------------------------------------------------------------


def test_model_free_prompt_like_recording(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    fake.service_time_s = 0.2
    ws = connect()
    other = connect("someone-else")
    body = with_client(recorded_body(12))

    response = http.post("/prompt", json=body)
    posted = assert_like_recording(response, sample_by_number(12))
    assert posted["node_errors"] == {}
    prompt_id = posted["prompt_id"]
    assert_like_recording(http.get(f"/history/{prompt_id}"), sample_by_number(13))
    assert http.history(prompt_id) == {}

    frames = ws.until(is_type("execution_start"))
    queue = assert_like_recording(http.get("/queue"), sample_by_number(14))
    assert queue["queue_running"][0][1] == prompt_id
    assert queue["queue_running"][0][3]["client_id"] == CLIENT_ID
    frames += ws.until(is_done(prompt_id))
    assert_same_frames(frames, recorded_frames("ws-model_free.json"))
    executed = next(f for f in frames if frame_type(f) == "executed")
    expected_output = next(
        f for f in recorded_frames("ws-model_free.json") if frame_type(f) == "executed"
    )["msg"]["data"]["output"]
    assert executed["msg"]["data"]["output"] == expected_output

    other_frames = other.until(
        lambda f: f["msg"]["data"]["status"]["exec_info"]["queue_remaining"] == 0
    )
    assert_same_frames(other_frames, recorded_frames("ws-model_free-other_client.json"))

    recorded_history = sample_by_number(15)
    history = assert_like_recording(http.get(f"/history/{prompt_id}"), recorded_history, by_id)
    entry, expected = history_entry(history), history_entry(recorded_history["response"]["body"])
    assert entry["outputs"] == expected["outputs"]
    assert entry["meta"] == expected["meta"]
    assert entry["prompt"][2] == expected["prompt"][2]
    assert entry["status"]["status_str"] == "success"
    assert [m[0] for m in entry["status"]["messages"]] == [
        m[0] for m in expected["status"]["messages"]
    ]

    view = http.get("/view", params={"filename": "gw_modelfree_00001_.png", "type": "output"})
    assert_like_recording(view, sample_by_number(16))
    recorded_view = sample_by_number(16)["response"]["headers"]
    assert view.headers["Content-Disposition"] == recorded_view["Content-Disposition"]
    png = Image.open(io.BytesIO(view.content))
    assert png.size == (64, 64)
    assert png.getpixel((0, 0)) == (0, 255, 255)  # red inverted
    assert view.content == (SAMPLES / "view-model_free.png").read_bytes()


def test_identical_prompt_is_all_cached(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    ws = connect()
    body = with_client(recorded_body(12))
    ws.until(is_done(http.prompt(body)))

    response = http.post("/prompt", json=body)
    prompt_id = assert_like_recording(response, sample_by_number(19))["prompt_id"]
    frames = ws.until(is_done(prompt_id))
    recorded = recorded_frames("ws-model_free-cached.json")
    assert_same_frames(frames, recorded)
    assert frames[3]["msg"]["data"]["nodes"] == ["1", "2", "3"]
    assert frames[4]["msg"]["data"]["output"] == recorded[4]["msg"]["data"]["output"]

    recorded_history = sample_by_number(20)
    entry = history_entry(
        assert_like_recording(http.get(f"/history/{prompt_id}"), recorded_history, by_id)
    )
    expected = history_entry(recorded_history["response"]["body"])
    assert entry["outputs"] == expected["outputs"]
    assert entry["status"]["messages"][1][1]["nodes"] == ["1", "2", "3"]


def test_subfolder_prefix_like_recording(http: Http, connect: Connect) -> None:
    """A filename_prefix with folders (the gateway's ``comfygate/<job id>/out``): the file is
    numbered within that folder, /history reports the folder as ``subfolder``, and /view
    serves it with that subfolder, byte for byte as the real server did."""
    ws = connect()
    response = http.post("/prompt", json=recorded_body(81))
    prompt_id = assert_like_recording(response, sample_by_number(81))["prompt_id"]
    ws.until(is_done(prompt_id))
    recorded_history = sample_by_number(82)
    history = assert_like_recording(http.get(f"/history/{prompt_id}"), recorded_history, by_id)
    expected = history_entry(recorded_history["response"]["body"])
    assert history_entry(history)["outputs"] == expected["outputs"]
    recorded_view = sample_by_number(83)
    view = http.get("/view", params=recorded_view["request"]["params"])
    assert_like_recording(view, recorded_view)
    assert (
        view.headers["Content-Disposition"]
        == recorded_view["response"]["headers"]["Content-Disposition"]
    )
    assert view.content == (SAMPLES / "view-subfolder.png").read_bytes()


def test_prompt_without_client_id(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    submitter = connect("submitter")
    other = connect("other")
    response = http.post("/prompt", json=recorded_body(21))
    prompt_id = assert_like_recording(response, sample_by_number(21))["prompt_id"]

    def idle_after_run(frame: Frame) -> bool:
        msg = frame["msg"]
        return bool(
            msg["type"] == "status" and msg["data"]["status"]["exec_info"] == {"queue_remaining": 0}
        )

    for ws, name in ((submitter, "submitter"), (other, "other_client")):
        frames = ws.until(idle_after_run)
        assert_same_frames(frames, recorded_frames(f"ws-no_client_id-{name}.json"))
        assert {f["msg"]["data"]["prompt_id"] for f in frames[2:-1]} == {prompt_id}
    fake.wait_idle()
    entry = history_entry(http.history(prompt_id))
    assert entry["prompt"][3] == {"create_time": entry["prompt"][3]["create_time"]}
    assert entry["status"]["status_str"] == "success"


def test_caller_chosen_prompt_id(http: Http) -> None:
    recorded = sample_by_number(22)
    response = http.post("/prompt", json=recorded["request"]["json"])
    body = assert_like_recording(response, recorded)
    assert body["prompt_id"] == recorded["request"]["json"]["prompt_id"]


# ------------------------------------------------------------------------------------------
# invalid prompts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", range(23, 36), ids=lambda n: f"sample-{n:02d}")
def test_invalid_prompt_like_recording(fake: FakeComfyUI, http: Http, number: int) -> None:
    recorded = sample_by_number(number)
    request = recorded["request"]
    if "json" in request:
        response = http.post("/prompt", json=request["json"])
    else:
        response = http.post("/prompt", data=request["form"])
    body = assert_like_recording(response, recorded)
    assert body == recorded["response"]["body"]
    assert fake.submissions == []
    assert fake.queue_remaining == 0


def test_partly_valid_prompt_runs_the_good_outputs(fake: FakeComfyUI, http: Http) -> None:
    body = recorded_body(32)
    body["prompt"]["3"]["inputs"]["batch_size"] = 1  # output 4 becomes valid, 2 stays invalid
    response = http.post("/prompt", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert list(answer["node_errors"]) == ["1"]
    assert answer["node_errors"]["1"]["dependent_outputs"] == ["2"]
    fake.wait_idle()
    entry = history_entry(http.history(answer["prompt_id"]))
    assert entry["prompt"][4] == ["4"]
    assert list(entry["outputs"]) == ["4"]


def test_values_are_converted_like_the_real_server(fake: FakeComfyUI, http: Http) -> None:
    body = recorded_body(12)
    body["prompt"]["1"]["inputs"]["width"] = "32"
    prompt_id = http.prompt(body)
    fake.wait_idle()
    entry = history_entry(http.history(prompt_id))
    assert entry["prompt"][2]["1"]["inputs"]["width"] == 32
    assert fake.submissions[0]["prompt"]["1"]["inputs"]["width"] == "32"
    png = Image.open(
        io.BytesIO(http.get("/view", params={"filename": "gw_modelfree_00001_.png"}).content)
    )
    assert png.size == (32, 64)


# ------------------------------------------------------------------------------------------
# failures at run time
# ------------------------------------------------------------------------------------------


def error_data(frames: list[Frame]) -> dict[str, Any]:
    data: dict[str, Any] = next(f for f in frames if frame_type(f) == "execution_error")["msg"][
        "data"
    ]
    return data


def test_save_outside_output_fails_at_run_time(http: Http, connect: Connect) -> None:
    ws = connect()
    response = http.post("/prompt", json=recorded_body(36))
    prompt_id = assert_like_recording(response, sample_by_number(36))["prompt_id"]
    frames = ws.until(is_done(prompt_id))
    recorded = recorded_frames("ws-runtime_error.json")
    assert_same_frames(frames, recorded)
    mine, theirs = error_data(frames), error_data(recorded)
    for key in ("node_id", "node_type", "executed", "exception_message", "exception_type"):
        assert mine[key] == theirs[key], key
    assert mine["traceback"] == theirs["traceback"]
    assert mine["current_inputs"] == theirs["current_inputs"]
    assert sorted(mine["current_outputs"]) == sorted(theirs["current_outputs"])

    recorded_history = sample_by_number(37)
    history = assert_like_recording(http.get(f"/history/{prompt_id}"), recorded_history, by_id)
    entry = history_entry(history)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert entry["outputs"] == {}
    assert entry["meta"] == {}


def test_fail_next_execution(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    ws = connect()
    body = with_client(recorded_body(12))
    fake.fail_next_execution()
    frames = ws.until(is_done(http.prompt(body)))
    error = error_data(frames)
    assert (error["node_id"], error["node_type"]) == ("3", "SaveImage")
    assert (error["exception_type"], error["exception_message"]) == ("RuntimeError", "boom\n")
    assert error["executed"] == ["1", "2"]
    assert shape(error) == shape(error_data(recorded_frames("ws-runtime_error.json")))

    # The next prompt runs normally; then a targeted failure even though all is cached.
    ws.until(is_done(http.prompt(body)))
    fake.fail_next_execution("1", message="kaput", exception_type="ValueError")
    prompt_id = http.prompt(body)
    frames = ws.until(is_done(prompt_id))
    error = error_data(frames)
    assert (error["node_id"], error["exception_type"]) == ("1", "ValueError")
    assert error["exception_message"] == "kaput\n"
    entry = history_entry(http.history(prompt_id))
    assert entry["status"]["status_str"] == "error"
    assert fake.history_count == 3


# ------------------------------------------------------------------------------------------
# uploads and LoadImage
# ------------------------------------------------------------------------------------------


def upload(http: Http, name: str, data: bytes, **form: str) -> requests.Response:
    return http.post("/upload/image", files={"image": (name, data, "image/png")}, data=form)


def test_upload_and_load_image(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    png = (SAMPLES / "view-model_free.png").read_bytes()
    for number, data, form in (
        (38, png, {}),
        (39, png, {}),
        (40, png + b"\0", {}),
        (41, png, {"overwrite": "true", "subfolder": "gw", "type": "input"}),
        (45, b"not an image !!!", {}),
    ):
        exchange = sample_by_number(number)
        name = exchange["request"]["files"]["image"][0]
        body = assert_like_recording(upload(http, name, data, **form), exchange)
        assert body == exchange["response"]["body"]
    no_file = http.post("/upload/image", data={"overwrite": "true"})
    assert_like_recording(no_file, sample_by_number(42))

    info = http.get("/object_info/LoadImage").json()["LoadImage"]
    assert info["input"]["required"]["image"][0] == [
        "gw_garbage.png",
        "gw_upload (1).png",
        "gw_upload.png",
    ]

    ws = connect()
    response = http.post("/prompt", json=recorded_body(43))
    prompt_id = assert_like_recording(response, sample_by_number(43))["prompt_id"]
    ws.until(is_done(prompt_id))
    recorded_history = sample_by_number(44)
    entry = history_entry(
        assert_like_recording(http.get(f"/history/{prompt_id}"), recorded_history, by_id)
    )
    assert entry["outputs"] == history_entry(recorded_history["response"]["body"])["outputs"]
    out = http.get("/view", params={"filename": "gw_from_upload_00001_.png"})
    assert Image.open(io.BytesIO(out.content)).getpixel((0, 0)) == (255, 0, 0)

    response = http.post("/prompt", json=recorded_body(46))
    prompt_id = assert_like_recording(response, sample_by_number(46))["prompt_id"]
    frames = ws.until(is_done(prompt_id))
    recorded = recorded_frames("ws-runtime_error_bad_image.json")
    assert_same_frames(frames, recorded)
    mine, theirs = error_data(frames), error_data(recorded)
    for key in ("node_id", "node_type", "executed", "exception_message", "exception_type"):
        assert mine[key] == theirs[key], key
    assert mine["traceback"] == theirs["traceback"]
    assert mine["current_inputs"] == theirs["current_inputs"]
    assert_like_recording(http.get(f"/history/{prompt_id}"), sample_by_number(47), by_id)

    view = http.get(
        "/view", params={"filename": "gw_upload.png", "subfolder": "gw", "type": "input"}
    )
    assert view.content == png


# ------------------------------------------------------------------------------------------
# history and /view
# ------------------------------------------------------------------------------------------


def test_history_listing_and_delete(fake: FakeComfyUI, http: Http) -> None:
    ids = []
    for color in (1, 2, 3):
        body = recorded_body(12)
        body["prompt"]["1"]["inputs"]["color"] = color
        ids.append(http.prompt(body))
    fake.wait_idle()
    all_items = assert_like_recording(http.get("/history"), sample_by_number(48), skeleton)
    assert list(all_items) == ids
    assert fake.history_count == 3
    last_two = http.get("/history", params={"max_items": "2"})
    assert list(assert_like_recording(last_two, sample_by_number(49), skeleton)) == ids[1:]
    assert_like_recording(http.get(f"/history/{'0' * 8}-0000"), sample_by_number(50))

    recorded = sample_by_number(51)
    deleted = http.post("/history", json={"delete": [ids[0]]})
    assert_like_recording(deleted, recorded)
    assert_like_recording(http.get(f"/history/{ids[0]}"), sample_by_number(52))
    assert http.history(ids[0]) == {}
    assert fake.history_count == 2
    assert_like_recording(http.post("/free", json=recorded_body(53)), sample_by_number(53))
    assert http.post("/history", json={"clear": True}).status_code == 200
    assert http.get("/history").json() == {}


def test_view_errors(fake: FakeComfyUI, http: Http) -> None:
    assert_like_recording(http.get("/view", params={"filename": "nope.png"}), sample_by_number(17))
    traversal = http.get("/view", params={"filename": "../secret.png", "type": "output"})
    assert_like_recording(traversal, sample_by_number(18))
    assert http.get("/view", params={"filename": "x.png", "subfolder": "../.."}).status_code == 403
    assert http.get("/view", params={"filename": "x.png", "type": "models"}).status_code == 400
    assert http.get("/view").status_code == 404


# ------------------------------------------------------------------------------------------
# queue manipulation and interrupts
# ------------------------------------------------------------------------------------------


def test_queue_delete_and_targeted_interrupt(
    fake: FakeComfyUI, http: Http, connect: Connect
) -> None:
    # Warm-up so that, as in the recording, only the checkpoint and "blurry" are cached.
    http.prompt(sd_body("warm-up", seed=5, steps=1, size=128))
    fake.wait_idle()
    fake.step_time_s = 0.5
    ws = connect()

    response = http.post("/prompt", json=with_client(recorded_body(56)))
    long_id = assert_like_recording(response, sample_by_number(56))["prompt_id"]
    frames = ws.until(is_type("progress"))
    pending = []
    for number in (57, 58, 59):
        answer = assert_like_recording(
            http.post("/prompt", json=with_client(recorded_body(number))), sample_by_number(number)
        )
        pending.append(answer)
    numbers = [p["number"] for p in pending]
    assert numbers[1] == numbers[0] + 1
    assert numbers[2] == -(numbers[0] + 2)
    p1, p2, p3 = (p["prompt_id"] for p in pending)

    queue = assert_like_recording(http.get("/queue"), sample_by_number(60))
    assert [item[1] for item in queue["queue_running"]] == [long_id]
    assert [item[1] for item in queue["queue_pending"]] == [p3, p2, p1]  # heap order, like 60
    assert_like_recording(http.get(f"/history/{long_id}"), sample_by_number(61))
    assert_like_recording(http.get(f"/history/{p2}"), sample_by_number(62))

    assert_like_recording(http.post("/queue", json={"delete": [p2]}), sample_by_number(63))
    queue = assert_like_recording(http.get("/queue"), sample_by_number(64))
    assert [item[1] for item in queue["queue_pending"]] == [p3, p1]

    assert_like_recording(http.post("/interrupt", json={"prompt_id": p1}), sample_by_number(65))
    assert [item[1] for item in http.get("/queue").json()["queue_running"]] == [long_id]
    assert_like_recording(
        http.post("/interrupt", json={"prompt_id": long_id}), sample_by_number(66)
    )
    frames += ws.until(is_done(p1))
    assert_same_frames(frames, recorded_frames("ws-queue_delete_interrupt.json"))
    started = [f["msg"]["data"]["prompt_id"] for f in frames if frame_type(f) == "execution_start"]
    assert started == [long_id, p3, p1]
    interrupted = next(f for f in frames if frame_type(f) == "execution_interrupted")
    assert interrupted["msg"]["data"]["node_id"] == "3"
    assert sorted(interrupted["msg"]["data"]["executed"]) == ["5", "6"]

    recorded_history = sample_by_number(67)
    entry = history_entry(
        assert_like_recording(http.get(f"/history/{long_id}"), recorded_history, by_id)
    )
    expected = history_entry(recorded_history["response"]["body"])
    assert entry["status"]["status_str"] == "error"
    assert [m[0] for m in entry["status"]["messages"]] == [
        m[0] for m in expected["status"]["messages"]
    ]
    assert entry["status"]["messages"][1][1]["nodes"] == ["4", "7"]
    assert_like_recording(http.get(f"/history/{p2}"), sample_by_number(68))
    assert http.history(p2) == {}


def test_queue_clear_and_global_interrupt(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    fake.step_time_s = 0.5
    ws = connect()
    response = http.post("/prompt", json=with_client(recorded_body(69)))
    long_id = assert_like_recording(response, sample_by_number(69))["prompt_id"]
    frames = ws.until(is_type("progress"))
    for number in (70, 71):
        http.prompt(with_client(recorded_body(number)))
    queue = assert_like_recording(http.get("/queue"), sample_by_number(72))
    assert len(queue["queue_pending"]) == 2
    assert_like_recording(http.post("/queue", json={"clear": True}), sample_by_number(73))
    queue = assert_like_recording(http.get("/queue"), sample_by_number(74))
    assert [item[1] for item in queue["queue_running"]] == [long_id]

    assert_like_recording(http.post("/interrupt"), sample_by_number(75))
    frames += ws.until(is_done(long_id))
    assert_same_frames(frames, recorded_frames("ws-global_interrupt.json"))
    interrupted = next(f for f in frames if frame_type(f) == "execution_interrupted")
    assert sorted(interrupted["msg"]["data"]["executed"]) == ["4", "5", "6", "7"]
    queue = assert_like_recording(http.get("/queue"), sample_by_number(76))
    assert queue == sample_by_number(76)["response"]["body"]


def test_hold_keeps_prompts_pending(fake: FakeComfyUI, http: Http) -> None:
    fake.hold()
    first = http.prompt(recorded_body(12))
    second = http.prompt(recorded_body(21))
    queue = http.get("/queue").json()
    assert queue["queue_running"] == []
    assert [item[1] for item in queue["queue_pending"]] == [first, second]
    http.post("/queue", json={"delete": [first]})
    fake.release()
    fake.wait_idle()
    assert http.history(first) == {}
    assert history_entry(http.history(second))["status"]["status_str"] == "success"
    assert [s["prompt_id"] for s in fake.submissions] == [first, second]
    assert fake.submissions[0]["client_id"] == CLIENT_ID
    assert fake.submissions[1]["client_id"] is None
    assert fake.submissions[0]["prompt"] == recorded_body(12)["prompt"]


# ------------------------------------------------------------------------------------------
# Origin check, /api prefix
# ------------------------------------------------------------------------------------------


def test_origin_mismatch_is_forbidden(fake: FakeComfyUI, http: Http) -> None:
    foreign = {"Origin": "http://evil.example.com"}
    response = http.post("/prompt", json=recorded_body(77), headers=foreign)
    assert_like_recording(response, sample_by_number(77))
    assert_like_recording(http.get("/queue", headers=foreign), sample_by_number(78))
    assert fake.submissions == []
    same = {"Origin": fake.url}
    assert_like_recording(http.get("/queue", headers=same), sample_by_number(79))


def test_api_prefix(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    ws = connect(path="/api/ws")
    prompt_id = http.post("/api/prompt", json=with_client(recorded_body(12))).json()["prompt_id"]
    ws.until(is_done(prompt_id))
    assert prompt_id in http.get("/api/history").json()


# ------------------------------------------------------------------------------------------
# the SD 1.5 graph
# ------------------------------------------------------------------------------------------


def test_sd15_graph_cold_warm_and_cached(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    ws = connect()
    response = http.post("/prompt", json=with_client(recorded_body(54)))
    prompt_id = assert_like_recording(response, sample_by_number(54))["prompt_id"]
    frames = ws.until(is_done(prompt_id))
    assert_same_frames(frames, recorded_frames("ws-sd15-cold.json"))
    progress = [f["msg"]["data"] for f in frames if frame_type(f) == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (i, 4, "3") for i in range(1, 5)
    ]
    recorded_history = sample_by_number(55)
    entry = history_entry(
        assert_like_recording(http.get(f"/history/{prompt_id}"), recorded_history, by_id)
    )
    assert entry["outputs"] == history_entry(recorded_history["response"]["body"])["outputs"]
    image = Image.open(
        io.BytesIO(http.get("/view", params={"filename": "sd15_random_00001_.png"}).content)
    )
    assert image.size == (64, 64)
    ws.close()

    # A client announcing preview metadata support gets type-4 preview frames.
    ws = connect("metadata-client")
    ws.send({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    flags = ws.recv()
    assert flags["msg"] == {
        "type": "feature_flags",
        "data": sample("07-features.json")["response"]["body"],
    }
    warm = sd_body("a photo of a dog", seed=2, steps=4)
    warm["client_id"] = "metadata-client"
    frames = ws.until(is_done(http.prompt(warm)))
    assert_same_frames(frames, recorded_frames("ws-sd15-warm-preview_metadata_client.json"))
    assert frames[3]["msg"]["data"]["nodes"] == ["4", "7", "5"]

    frames = ws.until(is_done(http.prompt(warm)))
    assert_same_frames(frames, recorded_frames("ws-sd15-all-cached.json"))


def test_preview_image_goes_to_temp(fake: FakeComfyUI, http: Http) -> None:
    body = recorded_body(12)
    body["prompt"]["3"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    prompt_id = http.prompt(body)
    fake.wait_idle()
    (image,) = history_entry(http.history(prompt_id))["outputs"]["3"]["images"]
    assert image["type"] == "temp"
    assert image["filename"].startswith("ComfyUI_temp_")
    assert image["filename"].endswith("_00001_.png")
    assert http.get("/view", params={**image}).status_code == 200


# ------------------------------------------------------------------------------------------
# fault injection
# ------------------------------------------------------------------------------------------


def test_websocket_refused_and_dropped(fake: FakeComfyUI, connect: Connect) -> None:
    fake.ws_enabled = False
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect()
    assert refused.value.status_code == 503
    fake.ws_enabled = True
    ws = connect()
    fake.drop_websockets()
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
    ws = connect()  # reconnecting works
    fake.drop_websockets(abrupt=True)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
    connect()


def test_http_delay(fake: FakeComfyUI, http: Http) -> None:
    fake.http_delay_s = 0.2
    started = time.monotonic()
    assert http.get("/queue").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_service_time_and_caching_switch(fake: FakeComfyUI, http: Http) -> None:
    fake.service_time_s = 0.15
    fake.caching = False
    for _ in range(2):
        prompt_id = http.prompt(recorded_body(12))
        fake.wait_idle()
        messages = history_entry(http.history(prompt_id))["status"]["messages"]
        assert messages[1][1]["nodes"] == []
        assert messages[-1][1]["timestamp"] - messages[0][1]["timestamp"] >= 140


def test_restart_loses_queue_and_history(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    url = fake.url
    ws = connect()
    first = http.prompt(recorded_body(12))
    fake.wait_idle()
    fake.restart()
    assert fake.url == url
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.until(lambda frame: False)
    assert http.history(first) == {}
    assert fake.history_count == 0
    assert http.get("/view", params={"filename": "gw_modelfree_00001_.png"}).status_code == 200
    assert http.post("/prompt", json=recorded_body(12)).json()["number"] == 0
    fake.wait_idle()

    fake.hold()
    kept = http.prompt(recorded_body(21))
    fake.restart(keep_state=True)
    assert [item[1] for item in http.get("/queue").json()["queue_pending"]] == [kept]
    fake.release()
    fake.wait_idle()
    assert history_entry(http.history(kept))["status"]["status_str"] == "success"
    assert fake.history_count == 2


def test_restart_while_running(fake: FakeComfyUI, http: Http, connect: Connect) -> None:
    fake.step_time_s = 0.5
    ws = connect()
    running = http.prompt(with_client(recorded_body(56)))
    ws.until(is_type("progress"))
    fake.step_time_s = 0.0
    fake.restart(keep_state=True)  # the running prompt goes back to the queue and runs again
    fake.wait_idle()
    assert history_entry(http.history(running))["status"]["status_str"] == "success"

    fake.step_time_s = 0.5
    ws = connect()
    lost = http.prompt(with_client(recorded_body(69)))
    ws.until(is_type("progress"))
    fake.restart()
    assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    assert http.history(lost) == {}
    assert fake.history_count == 0
