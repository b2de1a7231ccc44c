# syntax=docker/dockerfile:1
#
# driftstream's image: the wheels are built in one stage and installed, without
# the dev extras, into a slim runtime stage that runs as an unprivileged user.
#
#   docker build -t driftstream .
#   docker run --rm -v "$PWD/config:/etc/driftstream:ro" -p 9464:9464 driftstream \
#       run --config /etc/driftstream/driftstream.yaml
#
# The config must set metrics.host to 0.0.0.0 for the metrics port (and its
# /healthz, used by HEALTHCHECK below) to be reachable from outside the
# container. Any config key can also come from the environment
# (DRIFTSTREAM__SECTION__KEY), secrets from files (*_file keys).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The project's wheel and one for every dependency, so the runtime stage
# installs offline and needs no compiler.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DRIFTSTREAM_HEALTHCHECK_URL=http://127.0.0.1:9464/healthz
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels /wheels/driftstream-*.whl
# A fixed numeric id, so Kubernetes' runAsNonRoot can check it. Baselines
# written inside the container (the compose setup does) go to a folder it owns.
RUN useradd --system --uid 10001 --user-group --no-log-init \
        --home-dir /var/lib/driftstream --create-home driftstream \
    && mkdir -p /etc/driftstream /var/lib/driftstream/baselines \
    && chown driftstream:driftstream /var/lib/driftstream/baselines
WORKDIR /var/lib/driftstream
USER 10001:10001
EXPOSE 9464
# /healthz answers 200 while the worker's loop turns, 503 when it is stuck;
# urlopen raises on a 503 or no answer, so the check exits non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['DRIFTSTREAM_HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["driftstream"]
CMD ["run", "--config", "/etc/driftstream/driftstream.yaml"]
