"""Processes of the local mesh: dying with the launcher, process groups, and
who holds a port.

Every service `obsmesh up` starts is the leader of its own process group (a
new session), and what it starts stays in that group (crossbar's workers) or
dies with it (das2's readers, by their own parent-death signal). The launcher
gives each service `OBSMESH_LAUNCHER_PID`; `die_with_launcher` (called first
thing by `obsmesh`) asks the kernel for SIGTERM when that parent dies, however
it dies, so the service leaves the hub and stops. The reaper
(obsmesh/reaper.py) then kills whatever is left of each group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket

LAUNCHER_ENV = "OBSMESH_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    """Linux prctl(PR_SET_PDEATHSIG): `sig` to this process when its parent thread ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def die_with_launcher() -> None:
    """If started by the launcher, end (SIGTERM) when it ends. The variable is
    removed so that what this process starts does not take it for its own."""
    pid = os.environ.pop(LAUNCHER_ENV, None)
    if not pid:
        return
    set_parent_death_signal(signal.SIGTERM)
    if str(os.getppid()) != pid:  # the launcher died before the request took effect
        os._exit(1)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a process, from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1]), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[2] == pgid and st[0] not in ("Z", "X"):
                out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def signal_group(pgid: int, sig: int) -> None:
    """Signal the process group `pgid`, or the process `pgid` if it leads no group."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        try:
            os.kill(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    except PermissionError:
        pass


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now (as the services do: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str:
    """Who listens on `port`, in words: pid and command line when this user may see them."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        conns = []
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
            if c.pid:
                return f"pid {c.pid} ({cmdline(c.pid)[:160] or '?'})"
            return "a process this user cannot see"
    return "another socket (not listening: perhaps still closing)"
