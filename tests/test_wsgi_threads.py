"""waitress's worker threads, woken newest first: sequential requests stay on the warm
threads instead of going round all of them (comfygate/wsgi_server.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import requests
from flask import Flask

from comfygate.config_load import load_settings
from comfygate.wsgi_server import NewestFirst, build_server
from tests.helpers import wait_for
from tests.processes import free_port


def test_the_condition_wakes_the_thread_that_waited_last() -> None:
    condition = NewestFirst()
    woken: list[int] = []
    waiting = threading.Semaphore(0)

    def wait(number: int) -> None:
        with condition:
            waiting.release()
            condition.wait(10)
            woken.append(number)

    threads = []
    for number in range(3):  # each begins waiting after the one before
        thread = threading.Thread(target=wait, args=(number,))
        thread.start()
        assert waiting.acquire(timeout=10)
        threads.append(thread)
    for expected in ([2], [2, 1], [2, 1, 0]):  # one at a time, newest first
        with condition:  # every one still waiting is waiting once this is had
            condition.notify()
        assert wait_for(lambda e=expected: woken == e)  # type: ignore[misc]
    for thread in threads:
        thread.join(10)
    assert woken == [2, 1, 0]


def test_sequential_requests_run_on_a_few_threads_of_many(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.add_url_rule("/who", "who", lambda: threading.current_thread().name)
    port = free_port()
    settings = load_settings(
        None,
        {
            "port": port,
            "threads": 64,
            "data_dir": str(tmp_path),
            "backends": ["http://127.0.0.1:9"],
        },
    )
    server = build_server(app, settings)
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    try:
        with requests.Session() as session:
            names = {
                session.get(f"http://127.0.0.1:{port}/who", timeout=10).text for _ in range(40)
            }
    finally:
        server.close()
    # Round robin over the 64 gives 40 names; newest first, the thread that answered (or the
    # one before it, when the next request comes before it waits again) and little more.
    assert len(names) <= 8
