"""The one error type of the CO2 endpoint: a refusal with an HTTP status."""

from __future__ import annotations


class Rejected(Exception):
    """A request refused for a stated reason; the server answers `status` with
    `{"error": code, "message": message}` and writes nothing."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message}
