"""HAPI status codes (specification §4) and the one error type of the HAPI side.

Every answer carries a HAPI status object; an error is an HTTP status whose
first digit agrees with the HAPI code's (4xx with 14xx, 5xx with 15xx), a
status line that names the HAPI code, and a JSON body `{"HAPI", "status"}`
(also when CSV or binary was asked for). Messages never echo the client's
input back (specification §5.2): they say what was wrong, not what was sent.
"""

from __future__ import annotations

HAPI_VERSION = "3.3"

# code -> (HTTP status, HAPI message), the specification's table (§4.2, §8.3).
CODES: dict[int, tuple[int, str]] = {
    1200: (200, "OK"),
    1201: (200, "OK - no data for time range"),
    1400: (400, "Bad request - user input error"),
    1401: (400, "Bad request - unknown API parameter name"),
    1402: (400, "Bad request - syntax error in start time"),
    1403: (400, "Bad request - syntax error in stop time"),
    1404: (400, "Bad request - start equal to or after stop"),
    1405: (400, "Bad request - start < startDate and/or stop > stopDate"),
    1406: (404, "Bad request - unknown dataset id"),
    1407: (404, "Bad request - unknown dataset parameter"),
    1408: (400, "Bad request - too much time or data requested"),
    1409: (400, "Bad request - unsupported output format"),
    1410: (400, "Bad request - unsupported include value"),
    1411: (400, "Bad request - out-of-order or duplicate parameters"),
    1412: (400, "Bad request - unsupported resolve_references value"),
    1413: (400, "Bad request - unsupported depth value"),
    1500: (500, "Internal server error"),
    1501: (500, "Internal server error - upstream request error"),
}

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {500: "Internal Server Error", 503: "Service Unavailable"}


class HapiError(Exception):
    """A request the server cannot answer: a HAPI code, an optional detail, and the
    HTTP status (the code's own unless a more specific one of the same class is
    given, such as 405 for a POST or 503 while the mesh is unreachable)."""

    def __init__(self, code: int, detail: str = "", http: int | None = None) -> None:
        if code not in CODES:
            raise ValueError(f"unknown HAPI code {code}")
        default = CODES[code][0]
        if http is not None and http // 100 != default // 100:
            raise ValueError(f"HTTP {http} disagrees with HAPI {code}")
        super().__init__(detail or CODES[code][1])
        self.code = code
        self.detail = detail
        self.http = http or default

    def status(self) -> dict[str, object]:
        return status(self.code, self.detail)


def status(code: int, detail: str = "") -> dict[str, object]:
    """A status object; the detail follows the code's message after a colon."""
    message = CODES[code][1]
    return {"code": code, "message": f"{message}: {detail}" if detail else message}


def status_line(http: int, code: int) -> bytes:
    """`Not Found; HAPI 1406 Bad request - unknown dataset id` (the specification's form)."""
    reason = _REASONS.get(http, "Error")
    return f"{reason}; HAPI {code} {CODES[code][1]}".encode("ascii")


def document(code: int, detail: str = "") -> dict[str, object]:
    """The body of an error answer: `{"HAPI": "3.3", "status": {...}}`."""
    return {"HAPI": HAPI_VERSION, "status": status(code, detail)}
