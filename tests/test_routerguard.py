"""The router's outgoing bound: its setting (obsmesh/routerguard.py; the bound
itself is exercised through a real router in test_abuse_router.py)."""

from __future__ import annotations

import pytest

from obsmesh import routerguard
from obsmesh.router import render_config


def test_the_bound_comes_from_the_config_or_the_environment(monkeypatch):
    monkeypatch.delenv(routerguard.ENV, raising=False)
    assert routerguard.limit_from(None) == routerguard.DEFAULT_MAX_QUEUED_BYTES
    assert routerguard.limit_from({"max_queued_bytes": 1 << 20}) == 1 << 20
    monkeypatch.setenv(routerguard.ENV, str(2 << 20))
    assert routerguard.limit_from({"max_queued_bytes": 1 << 20}) == 2 << 20
    monkeypatch.setenv(routerguard.ENV, "1000")
    with pytest.raises(ValueError):
        routerguard.limit_from(None)


def test_the_rendered_router_hosts_the_bound_with_its_setting():
    config = render_config(max_queued_bytes=5 << 20)
    worker = config["workers"][0]
    outbound = [c for c in worker["components"] if c["id"] == "outbound"]
    assert outbound and outbound[0]["classname"] == "obsmesh.routerguard.OutboundGuard"
    assert outbound[0]["extra"]["max_queued_bytes"] == 5 << 20
    assert worker["options"]["env"]["vars"]["MALLOC_ARENA_MAX"] == "2"
