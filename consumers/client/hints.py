"""What to do about a refused or failed connection, in one sentence a user can
act on: appended to the client's `MeshUnavailable` messages."""

from __future__ import annotations

from urllib.parse import urlparse

BACKEND_SCHEMES = ("rs", "rss", "tcp")


def refusal_hint(reason: str, url: str, anonymous: bool, public_url: str = "") -> str:
    """Advice for the router's refusal `reason` of a session on `url`."""
    backend = urlparse(url).scheme in BACKEND_SCHEMES
    public = public_url or "ws://HOST:8080/ws"
    if (
        backend
        and anonymous
        and reason in ("wamp.error.no_auth_method", "wamp.error.not_authorized")
    ):
        return (
            "the backend transport admits services with a secret only: read through the "
            f"public WebSocket instead (leave the URL out, or --url {public}, anonymous and "
            "read-only), or give this client a secret (OBSMESH_SECRETS_FILE=.obsmesh/secrets.json "
            "where the mesh runs, or OBSMESH_SECRET)"
        )
    if not anonymous and reason in (
        "wamp.error.not_authorized",
        "wamp.error.authentication_failed",
        "wamp.error.authorization_failed",
    ):
        return (
            "the secret does not match this principal in the mesh's secrets file: check "
            "OBSMESH_SECRET / OBSMESH_SECRET_FILE / OBSMESH_SECRETS_FILE (`obsmesh secrets show NAME`), "
            f"or read anonymously through the public WebSocket ({public})"
        )
    if reason == "wamp.error.no_such_realm":
        return "check the realm (--realm or OBSMESH_REALM; the demo's is obsmesh)"
    if not backend and anonymous and reason == "wamp.error.no_auth_method":
        return "this router requires consumers to authenticate (consumer_auth): set OBSMESH_AUTHID and OBSMESH_SECRET"
    return ""


def unreachable_hint(error: str, url: str) -> str:
    """Advice when no connection to `url` could be made (`error` from the OS)."""
    if "refused" in error.lower():
        return (
            "Is the mesh running? `make run` starts it locally; to reach another mesh, "
            "set OBSMESH_PUBLIC_URL (or give --url)"
        )
    if "timed out" in error.lower() or "no route" in error.lower():
        return f"{url} does not answer: check the host, port and any firewall between"
    return ""
