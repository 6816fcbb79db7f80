"""Hostile HTTP clients for the fault-and-abuse suite, in a process of their own.

    python -m tests.attackers HOST PORT --slow N --tokenless N [--path P] ...

- `slow`: sends half a request head, then one byte every `--trickle` seconds
  (slowloris); reconnects when cut, so the pressure stays on.
- `tokenless`: a PUT head without a token announcing a 1 MiB body, then all of
  the body but its last byte, and holds the connection; reconnects when cut.

Clients are spread over `--sources` loopback addresses (127.77.x.y), so that
they count against the server's total cap rather than only its per-address
cap. The process prints one JSON line of figures every second (`open`: how
many connections it holds now) and a last one when stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
from collections import Counter


def _source(i: int, sources: int) -> str:
    k = i % sources
    return f"127.77.{k // 250}.{k % 250 + 1}"


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class Attack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats: Counter = Counter()
        self.open = 0
        self.stopping = False

    async def client(self, kind: str, i: int) -> None:
        args = self.args
        while not self.stopping:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(
                    args.host, args.port, local_addr=(_source(i, args.sources), 0)
                )
                self.open += 1
                self.stats[f"{kind}_connected"] += 1
                try:
                    await (self._slow if kind == "slow" else self._tokenless)(reader, writer)
                finally:
                    self.open -= 1
            except (OSError, asyncio.IncompleteReadError):
                self.stats[f"{kind}_refused_or_cut"] += 1
            finally:
                if writer is not None:
                    writer.close()
            await asyncio.sleep(args.reconnect)

    async def _slow(self, reader, writer) -> None:
        writer.write(f"PUT {self.args.path} HTTP/1.1\r\nHost: x\r\n".encode())
        await writer.drain()
        read = asyncio.ensure_future(reader.read(1))
        try:
            while not self.stopping:
                done, _ = await asyncio.wait([read], timeout=self.args.trickle)
                if done:
                    read.result()  # raises if the server reset the connection
                    self.stats["slow_cut"] += 1  # any answer to half a head ends it
                    return
                writer.write(b"X")
                await writer.drain()
        finally:
            read.cancel()
            read.add_done_callback(_retrieve)

    async def _tokenless(self, reader, writer) -> None:
        size = self.args.body
        writer.write(
            f"PUT {self.args.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        sent = 0
        block = b"\0" * 65536
        while sent < size - 1 and not self.stopping:
            n = min(len(block), size - 1 - sent)
            writer.write(block[:n])
            await writer.drain()
            sent += n
        self.stats["tokenless_body_bytes"] += sent
        answer = await reader.read(65536)  # the server's answer, then it closes
        if answer.startswith(b"HTTP/1.1 401"):
            self.stats["tokenless_401"] += 1
        while await reader.read(65536):
            pass
        self.stats["tokenless_closed_by_server"] += 1

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        tasks = [asyncio.ensure_future(self.client("slow", i)) for i in range(self.args.slow)] + [
            asyncio.ensure_future(self.client("tokenless", self.args.slow + i))
            for i in range(self.args.tokenless)
        ]
        started = time.monotonic()
        while not self.stopping:
            self.report(time.monotonic() - started)
            await asyncio.sleep(1.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.report(time.monotonic() - started, final=True)

    def stop(self) -> None:
        self.stopping = True

    def report(self, elapsed: float, final: bool = False) -> None:
        line = {"t": round(elapsed, 2), "open": self.open, "final": final, **self.stats}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.attackers")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--slow", type=int, default=0)
    p.add_argument("--tokenless", type=int, default=0)
    p.add_argument("--path", default="/ou/co2unit-000000000001/push-sequential/data/x?offset=0")
    p.add_argument("--body", type=int, default=1 << 20)
    p.add_argument("--trickle", type=float, default=20.0)
    p.add_argument("--reconnect", type=float, default=0.05)
    p.add_argument("--sources", type=int, default=40)
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(Attack(args).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
