"""Consumers of the mesh: the Grafana bridge, the browser dashboard, the Python client."""
