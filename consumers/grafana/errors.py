"""The one error type of the bridge's HTTP side: a message and an HTTP status."""

from __future__ import annotations


class RequestError(Exception):
    """A request the bridge cannot answer; the HTTP layer sends `{"error": message}`.

    400: a malformed body or argument; 401: credentials; 404/405: no such
    endpoint or method; 413: body too large; 503: the router is unreachable.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def unavailable(message: str = "the WAMP router is unreachable; retrying") -> RequestError:
    return RequestError(message, 503)
