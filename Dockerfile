# syntax=docker/dockerfile:1
# Dropout Playground: `docker build -t dropout-playground .` then
# `docker run -p 8000:8000 -v dp-data:/data dropout-playground`.
# For a small image, point pip at the PyTorch CPU wheel index with
# `--build-arg TORCH_INDEX=<url of that index>`; without it pip takes torch from the default
# index (a larger build that also runs on the CPU).

# Front-end assets come from npm, never from a CDN.
FROM node:20-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
ARG TORCH_INDEX=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# torch first, as its own layer: the project's requirement is a range this version satisfies.
# (It is pinned; hadolint misreads the optional --index-url expansion as the package.)
# hadolint ignore=DL3013
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.13.0

COPY pyproject.toml README.md ./
COPY app ./app
COPY templates ./templates
COPY static ./static
# The project's own dependencies are ranges in pyproject.toml (editable: templates/ and static/
# are read from /app). The extras make one image serve every role of a scaled-out deployment
# (compose.yaml): web processes on PostgreSQL, and Ray head and worker nodes.
# hadolint ignore=DL3013
RUN pip install -e ".[postgres,ray]"
COPY --from=assets /build/node_modules/htmx.org/dist/htmx.min.js ./node_modules/htmx.org/dist/htmx.min.js

RUN useradd --create-home --uid 10001 playground \
    && mkdir -p /data \
    && chown playground:playground /data
USER 10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
