"""Benchmark runner: `make bench` (or `python -m bench.run [NAME ...]`).

Every `bench/bench_*.py` module exposes `run() -> list[dict]`; each dict is one
figure: {"name", "value", "unit", "target" (text), "reference" (optional text,
the figure it is compared with in the same run), "ratio" (optional float),
"met" (optional bool)}. The runner prints a table and writes bench/results.json.
Benchmarks never fail the build: an exception in one is reported and the rest run.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent


def _modules(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if selected:
        names = [n for n in names if any(s in n for s in selected)]
    return names


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Nodes the benchmarks start keep their state (durable stores) in a directory of
    # this run's own: never in the developer's mesh (.obsmesh), never an earlier run's.
    state = tempfile.mkdtemp(prefix="obsmesh-bench-state-")
    os.environ.setdefault("OBSMESH_STATE_DIR", state)
    results: dict[str, object] = {"time": time.time(), "benchmarks": {}}
    rows: list[tuple[str, ...]] = []
    for name in _modules(argv):
        started = time.perf_counter()
        try:
            figures = importlib.import_module(f"bench.{name}").run()
        except Exception:  # a broken benchmark is reported, never fatal
            traceback.print_exc()
            results["benchmarks"][name] = {"error": traceback.format_exc()}
            rows.append((name, "ERROR", "", "", "", ""))
            continue
        results["benchmarks"][name] = {"figures": figures, "seconds": time.perf_counter() - started}
        for f in figures:
            met = f.get("met")
            rows.append(
                (
                    f"{name}: {f['name']}",
                    _fmt(f["value"]),
                    f.get("unit", ""),
                    f.get("target", ""),
                    _fmt(f["ratio"]) + "x" if f.get("ratio") is not None else "",
                    "" if met is None else ("met" if met else "MISSED"),
                )
            )
    header = ("figure", "value", "unit", "target", "ratio", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten {HERE / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
