"""The launcher's reaper: ends what is left of the local mesh once the launcher is gone.

`obsmesh up` starts it first (`python -m obsmesh.reaper GRACE`, in a session of
its own, so no terminal signal reaches it) and writes to its stdin one line
per process group: `+PGID` when a service starts, `-PGID` once that group is
empty. When stdin ends (the launcher exited or was killed, SIGKILL included:
the kernel closes the pipe), the reaper gives the services GRACE seconds to
stop by themselves (their parent-death signal has asked them to), then
SIGKILLs every group with a process left, and exits.
"""

from __future__ import annotations

import signal
import sys
import time

from obsmesh.procs import group_members, signal_group


def main(argv: list[str]) -> int:
    grace = float(argv[0]) if argv else 3.0
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line[:1] in ("+", "-") and line[1:].isdigit():
            (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {g for g in groups if group_members(g)}
        time.sleep(0.05)  # a poll of /proc, not a synchronisation
    for g in groups:
        signal_group(g, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
