# Grafana with the JSON datasource plugin installed at build time (no download
# when the container starts) and the obsmesh datasource and dashboards
# provisioned from grafana/. Grafana's image already runs as a non-root user.
# The admin password comes from the environment at run time, never from here.
ARG GRAFANA_IMAGE=grafana/grafana:12.1.0
FROM ${GRAFANA_IMAGE}
ARG JSON_DATASOURCE_VERSION=0.6.7

# Outside /var/lib/grafana, which a volume usually covers.
ENV GF_PATHS_PLUGINS=/usr/share/grafana/obsmesh-plugins
USER root
RUN mkdir -p "$GF_PATHS_PLUGINS" \
    && grafana cli --pluginsDir "$GF_PATHS_PLUGINS" plugins install simpod-json-datasource "$JSON_DATASOURCE_VERSION" \
    && chown -R 472:0 "$GF_PATHS_PLUGINS"
COPY grafana/provisioning/ /etc/grafana/provisioning/
COPY grafana/dashboards/ /etc/grafana/dashboards/obsmesh/
USER 472

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/api/health"]
