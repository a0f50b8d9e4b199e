# ComfyGate in a container (docs/DEPLOY.md). Two images:
#   docker build -t comfygate .                      the gateway; BACKENDS names your ComfyUI
#   docker build -t comfygate-cpu --target cpu .     plus the managed local CPU ComfyUI and a
#                                                    random-weight SD 1.5 checkpoint (~8 GB)
# tests/test_deploy.py checks this file statically (no image can be pulled where it runs).
FROM python:3.11-slim AS gateway
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --create-home --home-dir /var/lib/comfygate comfygate
WORKDIR /opt/comfygate
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install . && rm -rf /opt/comfygate/src /opt/comfygate/build
USER comfygate
WORKDIR /var/lib/comfygate
# In a container the gateway listens on every interface of its own network namespace; set
# COMFYGATE_API_KEYS (or _FILE) unless only a proxy on a private network reaches it.
ENV COMFYGATE_HOST=0.0.0.0 \
    COMFYGATE_DATA_DIR=/var/lib/comfygate/data
VOLUME ["/var/lib/comfygate/data"]
EXPOSE 8288
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8288/healthz', timeout=4)"]
# SIGTERM is the graceful stop (waiting requests answer 503 with their job id).
STOPSIGNAL SIGTERM
CMD ["comfygate", "serve"]

FROM gateway AS cpu
# No BACKENDS: the gateway runs this ComfyUI as a managed child process, on loopback.
ENV COMFYGATE_COMFYUI_HOME=/var/lib/comfygate/comfyui
RUN comfygate comfyui install
COPY config/local-cpu.toml /opt/comfygate/local-cpu.toml
CMD ["comfygate", "serve", "--config", "/opt/comfygate/local-cpu.toml"]
