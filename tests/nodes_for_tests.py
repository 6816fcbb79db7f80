"""A minimal node kind for tests of the base: samples are appended by the test."""

from __future__ import annotations

from nodes.base import DataNode
from obsmesh import config


class ProbeNode(DataNode):
    kind = "probe"
    description = "test probe"

    def setup(self) -> None:
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


class WideNode(DataNode):
    """Many number fields on one timeline, filled with `samples` seconds of history
    at start (a node that makes a query expensive). Run as a process:

        python -m tests.nodes_for_tests NAME FIELDS SAMPLES
    """

    kind = "probe"
    description = "test node with many fields"

    def __init__(self, name: str, settings: dict, fields: int, samples: int) -> None:
        super().__init__(name, settings)
        self.n_fields, self.samples = fields, samples

    def setup(self) -> None:
        for i in range(self.n_fields):
            self.declare(f"f{i:05d}", "wide", units="V")

    async def start(self) -> None:
        import time

        import numpy as np

        t = time.time() - self.samples + np.arange(self.samples, dtype=np.float64)
        values = np.sin(np.arange(self.samples) / 50.0)
        self.append("wide", t, {f: values for f in self.fields}, live=False)


if __name__ == "__main__":
    import sys

    from nodes.base import run_node

    name, n_fields, n_samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run_node(WideNode(name, config.mesh(), n_fields, n_samples))
