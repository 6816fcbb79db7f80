"""The Docker test lane (`make test-docker`) and the compose reader it uses."""
