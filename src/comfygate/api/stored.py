"""A stored file as an HTTP answer: its chunks streamed as the storage gives them, with its
content type and length, an ETag and byte ranges for GET and HEAD. The storage is closed
when the answer is over, whether the body was sent, cut short, or never read (304, HEAD)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, request
from werkzeug.exceptions import HTTPException

from comfygate.storage.base import Opened

CHUNK = 256 * 1024


class _Body:
    """The response body: its own iterator, so whatever wraps it (a range, the server)
    closes the stored file by closing it."""

    def __init__(self, opened: Opened, on_close: Callable[[], None] | None) -> None:
        self._opened = opened
        self._chunks = opened.chunks(CHUNK)
        self._on_close = on_close

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._opened.close()
        if self._on_close is not None:
            self._on_close()


def answer(
    opened: Opened,
    *,
    download_name: str | None = None,
    on_close: Callable[[], None] | None = None,
) -> Response:
    """``on_close``: called when the answer is over, after the file is closed."""
    body = _Body(opened, on_close)
    resp = Response(body, mimetype=opened.content_type, direct_passthrough=True)
    resp.content_length = opened.size
    if download_name is not None:
        resp.headers.set("Content-Disposition", "inline", filename=download_name)
    if opened.etag:
        resp.set_etag(opened.etag)
    try:
        # A range skips what comes before it by reading it: a stream cannot seek.
        resp.make_conditional(request, accept_ranges=True, complete_length=opened.size)
    except HTTPException:  # 416: a range past the end
        body.close()
        raise
    return resp
