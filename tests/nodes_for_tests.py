"""A minimal node kind for tests of the base: samples are appended by the test."""

from __future__ import annotations

from nodes.base import DataNode
from obsmesh import config


class ProbeNode(DataNode):
    kind = "probe"
    description = "test probe"

    def declare_fields(self) -> None:
        self.declare("x", "fast", units="V", description="a number")
        self.declare("y", "fast", units="A")
        self.declare("label", "slow", type="string")
        self.declare("ok", "slow", type="bool")


def probe(router, name: str = "probe", **overrides) -> ProbeNode:
    settings = config.mesh(
        environ={},
        router_url=router.backend_url,
        realm=router.realm,
        prefix=router.prefix,
        secrets_file=router.options["secrets_file"] or "",
        **overrides,
    )
    return ProbeNode(name, settings)
