"""Every WAMP URI of the mesh, built from one prefix (DESIGN.md, "The WAMP contract").

This module imports nothing but the standard library: the router-hosted hub uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "obsmesh"
DEFAULT_REALM = "obsmesh"

# A node name becomes one URI component, so it must be a strict WAMP component.
NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


def valid_node_name(name: object) -> bool:
    return isinstance(name, str) and NODE_NAME.match(name) is not None


@dataclass(frozen=True)
class Uris:
    prefix: str = DEFAULT_PREFIX

    # hub
    @property
    def add(self) -> str:
        return f"{self.prefix}.data_node.add"

    @property
    def subtract(self) -> str:
        return f"{self.prefix}.data_node.subtract"

    @property
    def get_data_node(self) -> str:
        return f"{self.prefix}.consumer.get_data_node"

    @property
    def added(self) -> str:
        return f"{self.prefix}.consumer.data_node_added"

    @property
    def subtracted(self) -> str:
        return f"{self.prefix}.consumer.data_node_subtracted"

    @property
    def hub_online(self) -> str:
        return f"{self.prefix}.hub.online"

    # data nodes
    def node(self, name: str, suffix: str) -> str:
        return f"{self.prefix}.consumer.{name}.{suffix}"

    def get_fields(self, name: str) -> str:
        return self.node(name, "get_fields")

    def get_data(self, name: str) -> str:
        return self.node(name, "get_data")

    def get_status(self, name: str) -> str:
        return self.node(name, "get_status")

    def get_events(self, name: str) -> str:
        return self.node(name, "get_events")

    def live(self, name: str) -> str:
        return self.node(name, "live")

    def live_array(self, name: str) -> str:
        return self.node(name, "live.array")

    def status_topic(self, name: str) -> str:
        return self.node(name, "status")

    # errors
    def error(self, kind: str) -> str:
        return f"{self.prefix}.error.{kind}"
