# The router image: crossbar in its own virtualenv (it pins old versions of
# common libraries), the app's virtualenv to render the configuration
# (`obsmesh router` renders, then execs crossbar), the hub and its
# authenticator (hosted by the router from /app), and the browser dashboard.
#
# No secret is baked in: the secrets file lives in a volume mounted at run
# time; `obsmesh router` creates it there on the first start if it is missing.
# Builds with the classic builder too (the Docker SDK's): no BuildKit-only syntax.
ARG PYTHON_IMAGE=python:3.11-slim

# The dashboard's browser libraries, from its lock file.
FROM node:22-slim AS web
WORKDIR /web
COPY consumers/web/package.json consumers/web/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# crossbar, built where a compiler is at hand (a few of its dependencies are sdists with C parts).
FROM ${PYTHON_IMAGE} AS crossbar
ARG CROSSBAR_VERSION=26.10.1
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /app/.venv-router \
    && /app/.venv-router/bin/pip install --no-cache-dir --disable-pip-version-check crossbar==${CROSSBAR_VERSION}

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/app/.venv/bin:$PATH \
    OBSMESH_STATE_DIR=/var/lib/obsmesh

# The same uid as the app image: both read the secrets volume.
RUN groupadd --system --gid 10001 obsmesh \
    && useradd --system --uid 10001 --gid obsmesh --home-dir /var/lib/obsmesh --no-create-home \
       --shell /usr/sbin/nologin obsmesh

WORKDIR /app
COPY pyproject.toml README.md ./
RUN python -m venv /app/.venv \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && /app/.venv/bin/pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Where obsmesh.router looks for it: /app/.venv-router/bin/crossbar.
COPY --from=crossbar /app/.venv-router /app/.venv-router

COPY .crossbar/ .crossbar/
COPY obsmesh/ obsmesh/
COPY hub/ hub/
COPY nodes/ nodes/
COPY consumers/ consumers/
COPY --from=web /web/node_modules consumers/web/node_modules
RUN /app/.venv/bin/pip install --no-deps -e . \
    && /app/.venv/bin/python -m compileall -q obsmesh hub nodes consumers

# The rendered configuration and crossbar's node key go to /var/lib/obsmesh/router.
RUN install -d -o obsmesh -g obsmesh /var/lib/obsmesh /var/lib/obsmesh/secrets /var/lib/obsmesh/router

USER obsmesh
WORKDIR /var/lib/obsmesh
EXPOSE 8080 8081

# The router and its hosted hub answer get_data_node (anonymously, on the public WebSocket).
HEALTHCHECK --interval=10s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "-m", "obsmesh.health"]

ENTRYPOINT ["obsmesh"]
CMD ["router", "--host", "0.0.0.0", "--cbdir", "/var/lib/obsmesh/router"]
