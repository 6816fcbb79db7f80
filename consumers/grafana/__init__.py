"""The Grafana bridge: an HTTP JSON datasource (current JSON plugin and legacy
SimpleJSON) in front of the mesh, a backend WAMP session behind it."""
