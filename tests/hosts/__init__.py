"""The multi-host lane's own programs (`make test-hosts`): a counting node and a
consumer probe, each run inside a simulated host (tests/netns.py)."""
