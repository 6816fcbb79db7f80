"""The one error type of the CO2 endpoint: a refusal with an HTTP status."""

from __future__ import annotations

from obsmesh.httpguard import Refusal


class Rejected(Refusal):
    """A request refused for a stated reason; the server answers `status` with
    `{"error": code, "message": message}` and writes nothing. Raised while the
    request head is checked, it is answered before any body byte is read."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.code = code

    def as_json(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message}
