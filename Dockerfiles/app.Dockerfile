# The application image: every obsmesh service but the router (the hub
# standalone, each node kind, the simulators, the Grafana bridge). The command
# picks the service: `docker run obsmesh-app node weather --dir /data`.
#
# No secret is baked in: a service gets the mesh's secrets file (OBSMESH_SECRETS_FILE,
# mounted read-only) or only its own secret (OBSMESH_SECRET) at run time.
# Builds with the classic builder too (the Docker SDK's): no BuildKit-only syntax.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/app/.venv/bin:$PATH \
    OBSMESH_STATE_DIR=/var/lib/obsmesh

# One non-root user, the same uid in the router image: both read the secrets volume.
RUN groupadd --system --gid 10001 obsmesh \
    && useradd --system --uid 10001 --gid obsmesh --home-dir /var/lib/obsmesh --no-create-home \
       --shell /usr/sbin/nologin obsmesh

WORKDIR /app
# Dependencies first, from pyproject.toml alone: this layer survives source edits.
COPY pyproject.toml README.md ./
RUN python -m venv /app/.venv \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && /app/.venv/bin/pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY obsmesh/ obsmesh/
COPY hub/ hub/
COPY nodes/ nodes/
COPY consumers/ consumers/
# Editable: the code stays in /app, where obsmesh.router.REPO expects the repository.
RUN /app/.venv/bin/pip install --no-deps -e . \
    && /app/.venv/bin/python -m compileall -q obsmesh hub nodes consumers

# State: each directory a named volume may mount, owned by the service user (a
# new volume takes the owner of the directory it is mounted on).
RUN install -d -o obsmesh -g obsmesh /var/lib/obsmesh /var/lib/obsmesh/secrets /var/lib/obsmesh/weather \
       /var/lib/obsmesh/co2 /var/lib/obsmesh/co2-units /var/lib/obsmesh/dataflow /var/lib/obsmesh/superdarn \
       /var/lib/obsmesh/canada

USER obsmesh
WORKDIR /var/lib/obsmesh

# Asks the service itself: a node's get_status (and the hub's listing), the
# bridge's `/`, a simulator's port; chosen from the container's command line.
HEALTHCHECK --interval=20s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "-m", "obsmesh.health"]

ENTRYPOINT ["obsmesh"]
CMD ["--help"]
