"""`python -m consumers.grafana`: the Grafana bridge (same as `obsmesh grafana`)."""

from consumers.grafana.cli import run

raise SystemExit(run())
