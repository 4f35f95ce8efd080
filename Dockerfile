# Colonnade in a container: the compiled build (mypyc) on a slim Python, run as
# an unprivileged user, stopped gracefully by SIGTERM, checked through /healthz.
#
#   docker build -t colonnade .
#   docker run --rm -p 8080:8080 colonnade
#
# With podman, build with --format docker: the OCI image format has no HEALTHCHECK.
#
# Your configuration and application: mount them, or build FROM this image.
# See docs/containers.md.

ARG PYTHON=3.12

# -- build: compile the hot modules with mypyc, make wheels of everything ----------
FROM python:${PYTHON}-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
# COLONNADE_MYPYC=1 asks for the compiled build (harmless where it is the default).
ENV COLONNADE_MYPYC=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip wheel --wheel-dir /wheels ".[redis]"

# -- run ----------------------------------------------------------------------------
FROM python:${PYTHON}-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "colonnade[redis]" \
 && python -c "import colonnade.core.urlpath as m; assert m.__file__.endswith('.so'), 'not compiled'" \
 && useradd --system --uid 10001 --no-create-home --home-dir /srv colonnade
COPY examples/container/default.toml /etc/colonnade/colonnade.toml
COPY examples/welcome /srv/www
USER colonnade:colonnade
WORKDIR /srv
EXPOSE 8080
# Colonnade's graceful stop (docs/operations.md): finish requests in flight.
STOPSIGNAL SIGTERM
# No curl in a slim image: Python asks the liveness probe (http.health).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["colonnade"]
CMD ["serve", "-c", "/etc/colonnade/colonnade.toml"]
