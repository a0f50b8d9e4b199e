"""A webhook receiver on a loopback address, for the webhook tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST (path, headers, body); answers 500 to the first ``fail_first``,
    then ``status`` (with a ``Location`` when ``location`` is set)."""

    def __init__(self, host: str = "127.0.0.1", *, fail_first: int = 0) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.status = 200
        self.location: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((self.path, dict(self.headers), data))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else receiver.status)
                if receiver.location and not failing:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://{host}:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
