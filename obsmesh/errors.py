"""WAMP errors of the mesh: URIs under `P.error.` with a human message."""

from __future__ import annotations

from autobahn.wamp.exception import ApplicationError

INVALID_ARGUMENT = "invalid_argument"
NO_SUCH_FIELD = "no_such_field"
TOO_MANY_POINTS = "too_many_points"
UNAVAILABLE = "unavailable"


class MeshError(Exception):
    """A caller's mistake or a refusal, turned into a WAMP error by `to_wamp`."""

    kind = INVALID_ARGUMENT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MeshError):
    kind = INVALID_ARGUMENT


class NoSuchField(MeshError):
    kind = NO_SUCH_FIELD


class TooManyPoints(MeshError):
    kind = TOO_MANY_POINTS


class Unavailable(MeshError):
    kind = UNAVAILABLE


def to_wamp(error: MeshError, prefix: str) -> ApplicationError:
    return ApplicationError(f"{prefix}.error.{error.kind}", error.message)
