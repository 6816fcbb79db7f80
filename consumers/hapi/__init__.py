"""HAPI 3.3: the mesh's timelines for heliophysics clients, served at `/hapi` on the
Grafana bridge's HTTP port (see README.md)."""
