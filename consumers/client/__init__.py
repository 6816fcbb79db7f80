"""Python client for analysis scripts and notebooks (sync `Mesh`, asyncio
`AsyncMesh`). See consumers/client/README.md."""

from consumers.client.aio import AsyncMesh, AsyncStream, AsyncSubscription
from consumers.client.core import Fields
from consumers.client.errors import (
    ClientError,
    Closed,
    InvalidArgument,
    MeshTimeout,
    MeshUnavailable,
    NodeUnavailable,
    ProtocolError,
    TooManyPoints,
    UnknownField,
    UnknownNode,
)
from consumers.client.live import Batch, Gap
from consumers.client.mesh import Mesh, Stream, Subscription
from consumers.client.result import Result, Timeline
from consumers.client.times import parse_duration, parse_time

__all__ = [
    "AsyncMesh",
    "AsyncStream",
    "AsyncSubscription",
    "Batch",
    "ClientError",
    "Closed",
    "Fields",
    "Gap",
    "InvalidArgument",
    "Mesh",
    "MeshTimeout",
    "MeshUnavailable",
    "NodeUnavailable",
    "ProtocolError",
    "Result",
    "Stream",
    "Subscription",
    "Timeline",
    "TooManyPoints",
    "UnknownField",
    "UnknownNode",
    "parse_duration",
    "parse_time",
]
