# livewatch: the daemon image the fleet stack runs on ECS Fargate (`livewatch run` on the SQS queue).
#
#   livewatch deploy --build-image                    # builds, tags, pushes to ECR, deploys the fleet
#   docker build -t livewatch .                       # or podman build / buildah bud
#
# Build-time secrets, never layers: a corporate CA bundle and a pip.conf (a private index, its
# credentials) come in as BuildKit secret mounts and are used by pip only:
#   docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt \
#                --secret id=pip-conf,src=$HOME/.config/pip/pip.conf -t livewatch .
#
# BASE: the official python:3.11-slim-bookworm, pinned by its multi-platform index digest so a
# rebuild gets the same base. Keep it current (monthly, or on a Debian or Python security release):
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # the "Digest:" line
#   (or: skopeo inspect --format '{{.Digest}}' docker://python:3.11-slim-bookworm)
# Pinned: the python:3.11-slim-bookworm index digest recorded on 2026-08-24 (copied from a public
# record; Docker Hub is unreachable from the machines this was written on: re-resolve it as above).
# Any Debian-based Python 3.11 with python3 -m venv works: --build-arg BASE=...
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# ---- build: the package and its dependencies, as wheels only, into a virtual environment ----
FROM ${BASE} AS build
# aws: the S3/SQS/SageMaker/DynamoDB plugins the fleet uses; onnx: ONNX Runtime, the fastest CPU
# backend of the in-process i3d classifier (classifier.backend = "onnxruntime").
ARG EXTRAS=aws,onnx
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a change to the code rebuilds only the step after;
# their own test suites (scipy's, pandas', ...) are removed.
# pip reads the secrets where they are mounted (/run/secrets/<id>), for this command only.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip-conf,required=false \
    --mount=type=secret,id=ca-bundle,required=false \
    set -eu; \
    if [ -s /run/secrets/pip-conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip-conf; fi; \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi; \
    python3 -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
extras = [r for e in sys.argv[1].split(",") for r in p["optional-dependencies"][e]]; \
print("\n".join(r for r in p["dependencies"] + extras if not r.startswith("livewatch")))' \
        "${EXTRAS}" > /tmp/requirements.txt; \
    python3 -m venv /opt/livewatch; \
    /opt/livewatch/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt \
        "setuptools>=65" wheel; \
    find /opt/livewatch/lib -depth -type d -name tests -exec rm -rf {} +; \
    find /opt/livewatch/lib -name conftest.py -delete; \
    rm -rf /tmp/requirements.txt /root/.cache
COPY README.md ./
COPY templates_gen/ templates_gen/
COPY livewatch/ livewatch/
# The package itself: no network, nothing but the sources above; then check every requirement is met.
RUN /opt/livewatch/bin/pip install --no-cache-dir --no-deps --no-build-isolation /src \
    && /opt/livewatch/bin/pip check \
    && rm -rf /root/.cache

# ---- the image: the base, the environment, a user; no compilers, no pip cache, no sources ----
FROM ${BASE}
# Shared libraries the wheels expect from the system (slim images lack them): MXNet's OpenMP and
# quad-precision math runtimes; libGL and GLib for OpenCV, which GluonCV imports (model-zoo models).
# Versions: whatever the base's Debian release has (its security updates included).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libquadmath0 libgl1 libglib2.0-0 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 livewatch \
    && useradd --system --uid 10001 --gid livewatch --home-dir /var/lib/livewatch --create-home \
       --shell /usr/sbin/nologin livewatch
COPY --from=build /opt/livewatch /opt/livewatch
# Configuration comes from LIVEWATCH_... variables (the fleet stack sets the source, classifier
# and sinks) or a config file mounted at /var/lib/livewatch/livewatch.toml.
# The health listener binds every interface so the orchestrator can reach /livez and /readyz;
# the fleet's security group admits nothing from outside the task. The web UI is off here: on a
# non-loopback address it needs a token (LIVEWATCH_UI_TOKEN, then LIVEWATCH_UI__ENABLED=true).
ENV PATH=/opt/livewatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/livewatch \
    LIVEWATCH_DAEMON__HEALTH_LISTEN=0.0.0.0:9108 \
    LIVEWATCH_UI__ENABLED=false \
    LIVEWATCH_DAEMON__LOG_FORMAT=json
WORKDIR /var/lib/livewatch
USER 10001:10001
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "livewatch.healthcheck"]
ENTRYPOINT ["livewatch"]
CMD ["run"]

# Last, so a new commit rebuilds nothing above (deploy --build-image sets them, and passes the
# version and revision as --label too: buildah reuses a cached LABEL step whatever its ARGs say).
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="livewatch" \
      org.opencontainers.image.description="Activity detection on live HLS video: the livewatch daemon" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
