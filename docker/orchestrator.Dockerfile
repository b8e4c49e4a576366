# syntax=docker/dockerfile:1
# The orchestrator (HTTP API) and the one-shot `trawl setup`: Trawl in a virtualenv on
# python:3.11-slim, no browser. Build from the repository root:
#   docker build -f docker/orchestrator.Dockerfile -t trawl-orchestrator .
# A preview (POST /v1/preview) of a phase on the browser engine needs Chromium: run the
# orchestrator from the worker image (`trawl orchestrator`) if you need those previews.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the dependencies first (a layer that survives source edits), then Trawl ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/trawl
WORKDIR /src
COPY pyproject.toml README.md ./
# Exactly the versions `make test` ran against: the runtime lock, hashes checked (every one
# ships manylinux wheels, so no compiler is needed; hatchling builds Trawl below).
COPY requirements/runtime.lock requirements/
RUN /opt/trawl/bin/pip install --require-hashes --no-deps -r requirements/runtime.lock
# The packages of [tool.hatch.build.targets.wheel] (tests/unit/test_deploy.py checks the list).
COPY workflows/ workflows/
COPY nodes/ nodes/
COPY worker/ worker/
COPY backends/ backends/
COPY orchestrator/ orchestrator/
COPY trawl/ trawl/
RUN /opt/trawl/bin/pip install --no-deps --no-build-isolation . \
 && /opt/trawl/bin/python -m compileall -q /opt/trawl/lib

# --- runtime: the virtualenv alone, run as a user without privileges ---
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 trawl \
 && useradd --system --uid 10001 --gid trawl --home-dir /home/trawl --create-home \
      --shell /usr/sbin/nologin trawl
COPY --from=builder /opt/trawl /opt/trawl
ENV PATH=/opt/trawl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRAWL_API_HOST=0.0.0.0 \
    TRAWL_HEALTH_HOST=0.0.0.0 \
    PORT=8080
USER 10001:10001
WORKDIR /home/trawl
EXPOSE 8080
# Docker's own check (Cloud Run ignores it and uses the probes of its manifest).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
# Exec form: `trawl` is PID 1 and receives SIGTERM itself (uvicorn drains requests).
ENTRYPOINT ["trawl"]
CMD ["orchestrator"]
