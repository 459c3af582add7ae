# syntax=docker/dockerfile:1
#
# usage-moments worker image.
#
#   docker build -t usage-moments .
#   docker run --init -e MOMENTS_KAFKA_BOOTSTRAP=broker:9092 -p 6066:6066 \
#       -v moments-state:/var/lib/moments usage-moments
#
# Two stages: `builder` makes a virtualenv in /opt/venv, `runtime` copies only
# that venv onto a clean slim image. Every setting comes from MOMENTS_*
# variables at run time; secrets (MOMENTS_SASL_PASSWORD, key files) are passed
# to `docker run` or mounted, never baked into a layer.

# ---------------------------------------------------------------- builder ---
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The venv lives at the same path in both stages: its scripts' shebangs are absolute.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing the source (or the
# README) reuses this layer. Every dependency, rocksdict included, ships
# manylinux wheels: no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# Then the project itself, without touching the dependencies installed above.
# A regular (not editable) install, so the venv alone is enough at run time.
COPY README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY config ./config
COPY domain ./domain
COPY web ./web
COPY state ./state
COPY engine ./engine
COPY commands ./commands
RUN pip install --no-cache-dir --no-deps . \
    && moments --help > /dev/null

# ---------------------------------------------------------------- runtime ---
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MOMENTS_DATA_DIR=/var/lib/moments

# A fixed uid/gid, so a bind-mounted state directory can be chowned to 10001 on the host.
RUN groupadd --system --gid 10001 moments \
    && useradd --system --uid 10001 --gid moments --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin moments \
    && install -d -o moments -g moments -m 0750 /var/lib/moments

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/moments

# RocksDB state of this worker; keep it across restarts to avoid a full table recovery.
VOLUME ["/var/lib/moments"]

# MOMENTS_WEB_PORT (default 6066): /healthz, /readyz, /metrics, /accounts/{id}.
EXPOSE 6066

# Liveness only (/healthz). /readyz answers 503 during rebalances and recovery,
# which must not get the container restarted. No curl in slim, so Python asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MOMENTS_WEB_PORT', '6066'), timeout=3)"]

# The worker shuts down cleanly (commits, closes RocksDB) on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["moments"]
CMD ["worker"]
