# syntax=docker/dockerfile:1
# The worker: Trawl in a virtualenv on python:3.11-slim plus Debian's Chromium (and fonts,
# so pages render text as they do in a desktop browser). Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t trawl-worker .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the same steps as docker/orchestrator.Dockerfile ---
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

# --- runtime: Chromium from Debian (no Playwright browser download), the virtualenv, a
# user without privileges ---
FROM ${PYTHON_IMAGE} AS runtime
# tini reaps the Chromium processes a crashed browser leaves behind (PID 1 must) and
# passes SIGTERM on to `trawl worker`, which drains within TRAWL_SHUTDOWN_GRACE_S.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      chromium \
      fonts-liberation \
      fonts-dejavu-core \
      fonts-noto-color-emoji \
      ca-certificates \
      tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 trawl \
 && useradd --system --uid 10001 --gid trawl --home-dir /home/trawl --create-home \
      --shell /usr/sbin/nologin trawl
COPY --from=builder /opt/trawl /opt/trawl
ENV PATH=/opt/trawl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRAWL_CHROMIUM_PATH=/usr/bin/chromium \
    TRAWL_API_HOST=0.0.0.0 \
    TRAWL_HEALTH_HOST=0.0.0.0 \
    PORT=8080
USER 10001:10001
WORKDIR /home/trawl
EXPOSE 8080
# Docker's own check (Cloud Run worker pools are not probed).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--", "trawl"]
CMD ["worker"]
