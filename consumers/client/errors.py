"""The client's exceptions: one base class, one subclass per kind of problem,
each also a familiar built-in (ValueError, LookupError, ConnectionError,
TimeoutError) so generic handlers catch them too."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Anything the obsmesh client reports."""


class InvalidArgument(ClientError, ValueError):
    """A bad argument: unparsable time, start after end, bad stride, bad name."""


class UnknownNode(ClientError, LookupError):
    """No data node of that name is on the mesh."""


class UnknownField(ClientError, LookupError):
    """The node has no field of that name."""


class TooManyPoints(ClientError):
    """The node refused a reply over its point budget."""


class NodeUnavailable(ClientError):
    """The node is listed but cannot answer now (restarting, overloaded, failing)."""


class MeshUnavailable(ClientError, ConnectionError):
    """The router cannot be reached (or refuses the session)."""


class MeshTimeout(ClientError, TimeoutError):
    """No answer in time."""


class ProtocolError(ClientError):
    """A reply that does not follow the contract."""


class Closed(ClientError):
    """The client was closed."""


# WAMP error URI suffix under `P.error.` -> exception class.
_BY_KIND: dict[str, type[ClientError]] = {
    "invalid_argument": InvalidArgument,
    "no_such_field": UnknownField,
    "too_many_points": TooManyPoints,
    "unavailable": NodeUnavailable,
}


def from_wamp(error: str, args: Any, prefix: str, node: str | None = None) -> ClientError:
    """A WAMP error (URI and args) as the matching client exception."""
    message = str(args[0]) if isinstance(args, list | tuple) and args else ""
    where = f"node {node!r}: " if node else ""
    if error.startswith(prefix + ".error."):
        kind = error[len(prefix) + len(".error.") :]
        cls = _BY_KIND.get(kind, ClientError)
        return cls(f"{where}{message or kind}")
    return ClientError(f"{where}{error}{': ' + message if message else ''}")
