# Redis for the nodes' history (OBSMESH_STORE=redis): the official image, run
# as its own non-root user, with a health check that asks the server.
ARG REDIS_IMAGE=redis:7.4-alpine
FROM ${REDIS_IMAGE}
USER redis
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "redis-cli ping | grep -qx PONG"]
# Append-only file in /data (a volume): history survives a restart of Redis too.
CMD ["redis-server", "--appendonly", "yes", "--save", ""]
