"""The playground (GET /) and the docs (GET /docs) in a real browser: Debian's Chromium driven
by Playwright, against a gateway served by waitress with the fake ComfyUI behind it.

Every request to anything but the live server is aborted and recorded, so the pages are shown
to work offline. ``scripts/setup-test-tools.sh`` (run by ``make test``) installs Chromium;
without it these tests fail, they are not skipped. They take the README's screenshots too;
with UPDATE_SCREENSHOTS=1 they are saved as docs/img/playground.png and docs/img/docs.png
(otherwise in a temporary folder, so a test run leaves the work tree as it was).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from comfygate.testing.fake_comfyui import FakeComfyUI
from tests.conftest import MakeApp
from tests.live import serve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# What works here as root, with no network but loopback.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
TIMEOUT_MS = 10_000


@dataclass
class Live:
    url: str
    fake: FakeComfyUI
    app: Flask
    prefix: str = ""  # the sub-path the gateway is served under (as behind a proxy)


@dataclass
class Tab:
    page: Page
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup-test-tools.sh", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/img with UPDATE_SCREENSHOTS=1, else a temporary folder."""
    folder = DOCS_IMG if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def live_options() -> dict[str, Any]:
    """Settings of the live gateway (a test parametrizes it), and `prefix`: a sub-path."""
    return {}


@pytest.fixture
def live(fake: FakeComfyUI, make_app: MakeApp, live_options: dict[str, Any]) -> Iterator[Live]:
    """The gateway on waitress in a thread, on a free 127.0.0.1 port; with a ``prefix``,
    mounted under that sub-path (what a reverse proxy's X-Forwarded-Prefix gives it)."""
    options = dict(live_options)
    prefix = options.pop("prefix", "")
    app = make_app([f"comfyui-1={fake.url}"], sse_heartbeat_s=0.5, **options)
    if prefix:
        app.wsgi_app = DispatcherMiddleware(NotFound(), {prefix: app.wsgi_app})  # type: ignore[method-assign]
    with serve(app) as url:
        yield Live(url, fake, app, prefix)


@pytest.fixture
def tab(browser: Browser, live: Live) -> Iterator[Tab]:
    context = browser.new_context(
        base_url=live.url, viewport={"width": 1280, "height": 860}, color_scheme="light"
    )
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    result = Tab(page)

    def refuse(route: Route) -> None:
        result.blocked.append(route.request.url)
        route.abort()

    # Anything not served by the gateway itself (a CDN, a font, a validator) is refused.
    context.route(lambda url: not url.startswith(live.url + "/"), refuse)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            result.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: result.console_errors.append(str(exc)))
    yield result
    context.close()


def open_playground(tab: Tab, path: str = "/") -> Page:
    page = tab.page
    resp = page.goto(path)
    assert resp is not None
    assert resp.status == 200
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    expect(page.locator("#template")).to_be_enabled()
    return page


def fill(page: Page, name: str, value: str) -> None:
    page.locator(f"#param-{name}").fill(value)


def test_playground_loads_and_builds_the_txt2img_form(tab: Tab) -> None:
    page = open_playground(tab)
    expect(page.locator("#template")).to_have_value("txt2img")
    expect(page.locator("#template option")).to_contain_text(["solid", "txt2img"])
    # A prompt is a textarea; numbers carry their bounds and a slider; enums are selects.
    expect(page.locator("textarea#param-prompt")).to_be_visible()
    steps = page.locator("#param-steps")
    expect(steps).to_have_attribute("type", "number")
    expect(steps).to_have_attribute("min", "1")
    expect(steps).to_have_attribute("max", "150")
    expect(steps).to_have_value("20")
    expect(page.locator("[data-param=steps] input[type=range]")).to_have_attribute("max", "150")
    expect(page.locator("[data-param=steps] .hint")).to_contain_text("min 1, max 150")
    expect(page.locator("#param-width")).to_have_attribute("min", "64")
    expect(page.locator("#param-width")).to_have_attribute("max", "2048")
    expect(page.locator("#param-cfg")).to_have_value("7")
    expect(page.locator("select#param-sampler option:checked")).to_have_text("euler")
    expect(page.locator("select#param-scheduler option:checked")).to_have_text("normal")
    # The seed is empty (random) until the dice gives it a value.
    seed = page.locator("#param-seed")
    expect(seed).to_have_value("")
    page.get_by_role("button", name="Random seed").click()
    expect(seed).to_have_value(re.compile(r"^\d+$"))
    # Another template, another form.
    page.locator("#template").select_option("solid")
    expect(page.locator("#param-color")).to_have_attribute("max", "16777215")
    expect(page.locator("#param-prompt")).to_have_count(0)
    # The backend panel.
    expect(page.locator("#backends .backend")).to_have_attribute("data-status", "healthy")
    expect(page.locator("#queue-summary")).to_contain_text("1 of 1 healthy")
    assert tab.console_errors == []
    assert tab.blocked == []


def test_generate_shows_progress_then_the_image_with_its_seed(
    tab: Tab, live: Live, screenshots: Path
) -> None:
    live.fake.step_time_s = 0.12
    page = open_playground(tab)
    fill(page, "prompt", "a lighthouse at dusk")
    fill(page, "steps", "10")
    fill(page, "width", "64")
    fill(page, "height", "64")
    fill(page, "seed", "1234")
    page.get_by_role("button", name="Generate").click()
    # Progress is seen on the way, then the end.
    expect(page.locator("#run-label")).to_contain_text("/ 10 steps")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#progress")).to_have_js_property("value", 100)
    card = page.locator("#gallery .card").first
    expect(card.locator(".seed")).to_have_text("seed 1234")
    image = card.locator("img")
    expect(image).to_have_attribute("src", re.compile(r"^http://127\.0\.0\.1:\d+/v1/outputs/"))
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 64", arg=image.element_handle()
    )
    card.locator("summary").click()
    expect(card.locator(".params")).to_contain_text('"a lighthouse at dusk"')
    expect(card.locator(".params")).to_contain_text("steps")
    page.mouse.move(0, 0)
    # At 1280 px, as a user sees it: the form's top, the result and backends beside it.
    page.evaluate("window.scrollTo(0, 0); document.querySelector('.controls').scrollTop = 0")
    page.screenshot(path=str(screenshots / "playground.png"))
    assert tab.console_errors == []
    assert tab.blocked == []


def test_an_image_parameter_takes_a_picked_file(tab: Tab, live: Live, tmp_path: Path) -> None:
    picture = tmp_path / "input.png"
    Image.new("RGB", (48, 40), (10, 200, 30)).save(picture)
    page = open_playground(tab)
    page.locator("#template").select_option("img2img")
    fill(page, "prompt", "the same, in winter")
    fill(page, "width", "64")
    fill(page, "height", "64")
    fill(page, "steps", "2")
    page.get_by_label("image file").set_input_files(str(picture))
    expect(page.get_by_alt_text("image preview")).to_be_visible()
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    card = page.locator("#gallery .card").first
    expect(card.locator("img")).to_have_attribute(
        "src", re.compile(r"^http://127\.0\.0\.1:\d+/v1/outputs/")
    )
    [submission] = live.fake.submissions
    name = submission["prompt"]["1"]["inputs"]["image"]
    assert name.startswith("cg-")
    assert live.fake.file(name, folder_type="input") is not None  # uploaded before the job ran
    assert tab.console_errors == []
    assert tab.blocked == []


def test_errors_are_shown_readably(tab: Tab, live: Live) -> None:
    page = open_playground(tab)
    error = page.locator("#error")
    # Refused by the gateway: 400 naming the field, which is marked.
    fill(page, "prompt", "x")
    fill(page, "steps", "0")
    page.get_by_role("button", name="Generate").click()
    expect(error).to_be_visible()
    expect(error).to_contain_text("Invalid parameter")
    expect(error).to_contain_text("greater than or equal to 1")
    expect(error).to_contain_text("field “steps”")
    expect(page.locator("[data-param=steps]")).to_have_class(re.compile("invalid"))
    # Failed on ComfyUI: the job's error names the node.
    fill(page, "steps", "2")
    fill(page, "width", "64")
    fill(page, "height", "64")
    live.fake.fail_next_execution("3", message="out of memory")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(error).to_contain_text("Generation failed")
    expect(error).to_contain_text("out of memory")
    expect(error).to_contain_text("node 3 (KSampler)")
    expect(page.locator("[data-param=steps]")).not_to_have_class(re.compile("invalid"))
    # Only the refused request's own 400 is in the console.
    assert all("400" in message for message in tab.console_errors), tab.console_errors


def test_copy_as_curl_gives_a_command_that_works(tab: Tab, live: Live, tmp_path: Path) -> None:
    tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = open_playground(tab)
    fill(page, "prompt", 'it\'s a "quoted" prompt')
    fill(page, "steps", "2")
    fill(page, "width", "64")
    fill(page, "height", "72")
    fill(page, "seed", "18446744073709551615")  # beyond JavaScript's exact integers
    page.get_by_role("button", name="Copy as curl").click()
    command = page.locator("#curl").inner_text()
    expect(page.locator("#curl-note")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == command
    assert f"{live.url}/v1/generate" in command
    result = subprocess.run(
        ["bash", "-c", command + " -sS -D headers.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    headers = (tmp_path / "headers.txt").read_text()
    assert "200 OK" in headers
    assert "X-Seed: 18446744073709551615" in headers
    with Image.open(io.BytesIO((tmp_path / "output.png").read_bytes())) as image:
        assert image.size == (64, 72)
    [submission] = live.fake.submissions
    assert submission["prompt"]["6"]["inputs"]["text"] == 'it\'s a "quoted" prompt'


def test_with_an_api_key_the_stream_is_read_with_fetch(tab: Tab, live: Live) -> None:
    page = open_playground(tab)
    key = page.locator("#api-key")
    key.fill("secret-key")
    key.dispatch_event("change")
    expect(page.locator("#template")).to_be_enabled()
    assert page.evaluate("sessionStorage.getItem('comfygate.apiKey')") == "secret-key"
    assert page.evaluate("localStorage.length") == 0
    page.locator("#template").select_option("solid")
    with page.expect_request(lambda r: r.url.endswith("/events")) as events:
        page.get_by_role("button", name="Generate").click()
    request = events.value
    assert request.headers["authorization"] == "Bearer secret-key"
    assert request.resource_type == "fetch"  # not an EventSource
    expect(page.locator("#run-status")).to_have_text("succeeded")
    image = page.locator("#gallery .card img").first
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    page.locator("#copy-curl").click()
    expect(page.locator("#curl")).to_contain_text("Authorization: Bearer $COMFYGATE_API_KEY")
    expect(page.locator("#curl")).not_to_contain_text("secret-key")
    # The key lasts for the tab only.
    page.reload()
    expect(page.locator("#api-key")).to_have_value("secret-key")
    assert tab.console_errors == []


def test_docs_render_offline(tab: Tab, screenshots: Path) -> None:
    page = tab.page
    resp = page.goto("/docs")
    assert resp is not None
    assert resp.status == 200
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ComfyGate")
    expect(page.locator(".opblock-summary-path[data-path='/v1/generate']")).to_be_visible()
    expect(
        page.locator(".opblock-summary-path[data-path='/v1/templates/txt2img/generate']")
    ).to_be_visible()
    # Open one operation: its per-template body schema renders.
    page.locator(".opblock-summary-path[data-path='/v1/templates/solid/generate']").click()
    body = page.locator(".opblock.is-open .opblock-section-request-body")
    expect(body).to_contain_text('"width": 64')
    body.get_by_role("tab", name="Schema").click()
    expect(body).to_contain_text("solid.GenerateRequest")
    expect(body).to_contain_text("color")
    page.locator(".opblock-summary-path[data-path='/v1/templates/solid/generate']").click()
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshots / "docs.png"))
    assert tab.blocked == []
    assert tab.console_errors == []


def box(page: Page, selector: str) -> dict[str, float]:
    """An element's box in page coordinates (not the viewport's)."""
    found = page.locator(selector).bounding_box()
    assert found is not None, selector
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    return {**found, "x": found["x"] + scroll[0], "y": found["y"] + scroll[1]}


def test_at_1280_px_the_result_and_backends_sit_at_the_top_beside_the_form(tab: Tab) -> None:
    page = open_playground(tab)
    assert page.viewport_size == {"width": 1280, "height": 860}
    fill(page, "prompt", "a cat")
    for name in ("width", "height"):
        fill(page, name, "64")
    fill(page, "steps", "2")
    # Where a user who filled the long form is: at its end, about to press Generate.
    page.locator("#param-checkpoint").scroll_into_view_if_needed()
    generate = page.get_by_role("button", name="Generate")
    expect(generate).to_be_in_viewport()
    generate.click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    controls, results, backends = (box(page, s) for s in (".controls", ".results", ".backends"))
    # Side by side, the three tops level, at the top of the page...
    assert results["x"] > controls["x"] + controls["width"]
    assert backends["x"] > results["x"] + results["width"]
    assert abs(results["y"] - controls["y"]) < 1
    assert abs(backends["y"] - controls["y"]) < 1
    assert controls["y"] < 120
    # ...and all of them in view, the button too: the form scrolls inside its panel.
    expect(page.locator("#gallery .card img")).to_be_in_viewport()
    expect(generate).to_be_in_viewport()
    assert page.evaluate("window.scrollY") == 0
    assert tab.console_errors == []


def test_the_checkpoint_is_a_list_of_what_the_backends_have(tab: Tab, live: Live) -> None:
    page = open_playground(tab)
    checkpoint = page.locator("select#param-checkpoint")
    expect(checkpoint.locator("option")).to_have_text(
        ["default (the first in checkpoints)", "random-sd15-fp16.safetensors"]
    )
    expect(checkpoint).to_have_value("")
    checkpoint.select_option("random-sd15-fp16.safetensors")
    fill(page, "prompt", "a cat")
    fill(page, "steps", "1")
    fill(page, "width", "64")
    fill(page, "height", "64")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    [submission] = live.fake.submissions
    assert submission["prompt"]["4"]["inputs"]["ckpt_name"] == "random-sd15-fp16.safetensors"
    assert tab.console_errors == []


BIG_SEED = "7593957928845232729"  # past 2**53: a JavaScript number would round it


def test_seeds_past_2_53_are_shown_and_reused_exactly(tab: Tab, live: Live) -> None:
    page = open_playground(tab)
    fill(page, "prompt", "a cat")
    fill(page, "steps", "1")
    fill(page, "width", "64")
    fill(page, "height", "64")
    fill(page, "seed", BIG_SEED)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    card = page.locator("#gallery .card").first
    expect(card.locator(".seed")).to_have_text(f"seed {BIG_SEED}")
    card.locator("summary").click()
    expect(card.locator(".params")).to_contain_text(BIG_SEED)
    # A random seed (drawn by the gateway, up to 2**64 - 1) is shown as the job has it.
    fill(page, "seed", "")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gallery .card")).to_have_count(2)
    newest = page.locator("#gallery .card").first
    job_id = newest.get_attribute("data-job")
    raw = requests.get(f"{live.url}/v1/jobs/{job_id}", timeout=10).text
    drawn = re.search(r'"seed":\s*(\d+)', raw)
    assert drawn is not None, raw
    expect(newest.locator(".seed")).to_have_text(f"seed {drawn.group(1)}")
    assert [str(s["prompt"]["3"]["inputs"]["seed"]) for s in live.fake.submissions] == [
        BIG_SEED,
        drawn.group(1),
    ]
    # "Use these" on the first card puts its exact seed back, and it is sent exactly (the
    # same request again: the cache answers it).
    card = page.locator("#gallery .card").nth(1)
    card.get_by_role("button", name="Use these").click()
    expect(page.locator("#param-seed")).to_have_value(BIG_SEED)
    with page.expect_request(lambda r: r.method == "POST") as sent:
        page.get_by_role("button", name="Generate").click()
    assert f'"seed":{BIG_SEED}' in (sent.value.post_data or "")
    expect(page.locator("#gallery .card")).to_have_count(3)
    expect(page.locator("#gallery .card").first.locator(".seed")).to_have_text(f"seed {BIG_SEED}")
    assert tab.console_errors == []


@pytest.mark.parametrize("live_options", [{"api_keys": "secret-key:admin"}])
def test_download_works_with_an_api_key(tab: Tab, live: Live) -> None:
    page = tab.page
    page.goto("/")
    page.locator("#api-key").fill("secret-key")
    page.locator("#api-key").dispatch_event("change")
    expect(page.locator("#template")).to_be_enabled()
    page.locator("#template").select_option("solid")
    fill(page, "width", "12")
    fill(page, "height", "10")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    # A plain link would be refused: the gateway wants the key on every output.
    href = page.get_by_role("link", name="Download").get_attribute("href")
    assert href is not None
    assert requests.get(href, timeout=10).status_code == 401
    with page.expect_download() as info:
        page.get_by_role("link", name="Download").click()
    download = info.value
    assert download.suggested_filename == "3-0.png"
    with Image.open(download.path()) as image:
        assert image.size == (12, 10)
    # Only the page's first requests, before the key was given, were refused.
    assert all("401" in message for message in tab.console_errors), tab.console_errors


@pytest.mark.parametrize("live_options", [{"prefix": "/comfy"}])
def test_the_pages_work_under_a_sub_path(tab: Tab, live: Live) -> None:
    requested: list[str] = []
    tab.page.on("request", lambda r: requested.append(r.url))
    assert requests.get(f"{live.url}/", timeout=10).status_code == 404  # only under /comfy/
    page = open_playground(tab, "/comfy/")
    page.locator("#template").select_option("solid")
    fill(page, "width", "9")
    fill(page, "height", "7")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    image = page.locator("#gallery .card img").first
    expect(image).to_have_attribute("src", re.compile(r"/comfy/v1/outputs/"))
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 9", arg=image.element_handle()
    )
    expect(page.locator("#backends .backend")).to_have_attribute("data-status", "healthy")
    page.locator("#copy-curl").click()
    expect(page.locator("#curl")).to_contain_text(f"{live.url}/comfy/v1/generate")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download").click()
    assert info.value.suggested_filename == "3-0.png"
    page.get_by_role("link", name="API docs").click()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ComfyGate")
    outside = [u for u in requested if not u.startswith(f"{live.url}/comfy/")]
    assert outside == []
    assert tab.console_errors == []
    assert tab.blocked == []
