"""A two-port cable emulator: delay and random loss between two TAP devices.

`tc netem` does this in the kernel; kernels built without netem (common in VMs)
get this instead. It opens TAP devices A and B; the caller puts A in the bridge
on one side of a link and B in the bridge on the other side, so every Ethernet
frame crossing the link passes here: each is dropped with probability `loss`,
else written to the other device `delay` seconds after it arrived, in order.
Both directions are impaired alike.

    python -m tests.linkemu TAP_A TAP_B --delay 0.2 --loss 0.2 [--seed N]

Prints "ready" once both devices exist, and its counters when it ends (SIGTERM).
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def run(a: str, b: str, delay: float, loss: float, seed: int) -> dict[str, int]:
    fds = {open_tap(a): None, open_tap(b): None}
    fa, fb = list(fds)
    other = {fa: fb, fb: fa}
    rng = random.Random(seed)
    # One FIFO per direction: a constant delay keeps the order of frames.
    queues: dict[int, collections.deque] = {fa: collections.deque(), fb: collections.deque()}
    counts = collections.Counter()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    print("ready", flush=True)
    while not stopping:
        now = time.monotonic()
        due = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min(due) - now) if due else 0.5
        try:
            readable, _, _ = select.select([fa, fb], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if rng.random() < loss:
                    counts["dropped"] += 1
                    continue
                queues[other[fd]].append((now + delay, frame))
        for fd, q in queues.items():
            while q and q[0][0] <= now:
                _, frame = q.popleft()
                try:
                    os.write(fd, frame)
                    counts["passed"] += 1
                except OSError:  # device down for a moment: the frame is lost, as on a wire
                    counts["write_errors"] += 1
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tap_a")
    p.add_argument("tap_b")
    p.add_argument("--delay", type=float, default=0.0, help="seconds each frame is held")
    p.add_argument("--loss", type=float, default=0.0, help="probability a frame is dropped")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if not (0 <= args.loss < 1 and args.delay >= 0):
        p.error("--loss must be in [0, 1) and --delay at least 0")
    counts = run(args.tap_a, args.tap_b, args.delay, args.loss, args.seed)
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
