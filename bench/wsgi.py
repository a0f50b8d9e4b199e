"""The gateway as a WSGI application object for other WSGI servers (settings from the
``COMFYGATE_*`` environment), used by the load benchmark to compare gunicorn's threaded worker
with waitress:

    COMFYGATE_BACKENDS=http://127.0.0.1:8188 .venv/bin/gunicorn -w 1 -k gthread --threads 64 \\
        bench.wsgi:app

One worker only: the gateway keeps its waiters, websockets and dispatcher in its process.
"""

from __future__ import annotations

from comfygate.app import create_app

app = create_app()
