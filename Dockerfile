# syntax=docker/dockerfile:1
# Dropout Playground: `docker build -t dropout-playground .` then
# `docker run -p 8000:8000 -v dp-data:/data dropout-playground`.
# torch is the CPU build, from PyTorch's CPU wheel index (build argument TORCH_INDEX; empty:
# the default index, whose Linux build carries CUDA and is several GB larger). The app is
# installed from its wheel, which carries the templates and the front-end libraries: no Node.

FROM python:3.11-slim-trixie AS wheel
WORKDIR /src
COPY pyproject.toml README.md dropout_playground.py ./
COPY app ./app
COPY templates ./templates
COPY static ./static
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim-trixie
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, as its own layer: the project's requirement is a range this version satisfies.
# (It is pinned; hadolint misreads the optional --index-url expansion as the package.)
# hadolint ignore=DL3013
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==${TORCH_VERSION}"

# The extras make one image serve every role of a scaled-out deployment (compose.yaml): web
# processes on PostgreSQL, and Ray head and worker nodes.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    pip install "$(ls /dist/*.whl)[postgres,ray]"

RUN useradd --create-home --uid 10001 playground \
    && mkdir -p /data \
    && chown playground:playground /data
USER 10001
WORKDIR /home/playground
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["dropout-playground", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
