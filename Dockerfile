# Glimpse in a slim image: CPU-only torch by default, non-root, tini as PID 1, the model cache
# (HF_HOME=/models) and the bot's state (DATA_DIR=/data) in volumes. See docs/docker.md.
#
#   docker build -t glimpse .                  # CPU image: torch's CPU wheels (not the CUDA build)
#   docker build -t glimpse:cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 .   # NVIDIA GPU image
#
# Build arguments, all optional:
#   BASE_IMAGE        any image with python3 (3.11 or newer) and its venv module
#   TORCH_VERSION     the torch release to install
#   TORCH_INDEX_URL   where torch comes from: PyTorch's CPU wheels by default, .../whl/cuXYZ for
#                     CUDA; empty to take torch from PIP_INDEX_URL/PIP_FIND_LINKS like the rest
# For hosts behind a TLS-intercepting proxy or a private package mirror (unused by default):
#   PIP_CERT, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS
#                     read by pip as usual. Files they name (a CA bundle, a wheel folder) go in
#                     the build context's docker-local/ folder, which appears as /build/ in the
#                     builder stage only, e.g. --build-arg PIP_CERT=/build/ca.crt
#                     --build-arg PIP_FIND_LINKS=/build/wheels. Nothing of it reaches the image.
# The engine here may be the classic builder: no BuildKit-only syntax below.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_CERT
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
# docker-loca[l] matches nothing when the folder is absent, and the build goes on.
COPY pyproject.toml docker-loca[l] /build/
# torch first and on its own: a plain `torch` requirement would pull the multi-GB CUDA build.
RUN set -eu; \
    if [ -n "$TORCH_INDEX_URL" ]; then set -- --index-url "$TORCH_INDEX_URL"; else set --; fi; \
    /opt/venv/bin/pip install "$@" "torch==${TORCH_VERSION}"
# The other dependencies, from pyproject.toml alone: editing the code does not redo this layer.
RUN /opt/venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("/build/pyproject.toml", "rb"))["project"]["dependencies"]))' > /build/requirements.txt \
 && /opt/venv/bin/pip install -r /build/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes pip
# torch's C++ headers and compiled tests (about 150 MB) serve only extension builders.
RUN rm -rf /opt/venv/lib/python3*/site-packages/torch/include \
           /opt/venv/lib/python3*/site-packages/torch/test

FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install --yes --no-install-recommends tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/glimpse glimpse \
 && mkdir -p /app /data /models \
 && chown glimpse:glimpse /data /models \
 && ln -s /data /app/data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/models \
    DATA_DIR=/data
# /app/data -> /data: a DATA_DIR=./data copied from .env.example still lands in the volume.
WORKDIR /app
# The code last: a code change rebuilds only these small layers.
COPY bot/ bot/
COPY cogs/ cogs/
USER glimpse
VOLUME ["/data", "/models"]
# Reads the age of DATA_DIR/heartbeat, which the bot refreshes every 5 s while it is connected
# to Discord and its model lane answers; imports no torch, loads no model. The start period
# covers the first start's model download.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 \
    CMD ["python", "-m", "bot.health", "--max-age", "60"]
# tini forwards docker stop's SIGTERM to the bot, which shuts down gracefully (exit 0).
ENTRYPOINT ["tini", "--", "python", "-m", "bot"]
CMD ["run"]
