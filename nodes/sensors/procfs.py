"""Pure parsers of /proc text and the rates derived from two readings."""

from __future__ import annotations

from collections.abc import Mapping

SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device


def parse_loadavg(text: str) -> dict[str, float]:
    one, five, fifteen = (float(v) for v in text.split()[:3])
    return {"load1": one, "load5": five, "load15": fifteen}


def parse_stat(text: str) -> dict[str, tuple[int, int]]:
    """Per CPU line (`cpu`, `cpu0`, ...): (busy jiffies, total jiffies)."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *values = line.split()
        nums = [int(v) for v in values[:8]]
        idle = nums[3] + (nums[4] if len(nums) > 4 else 0)  # idle + iowait
        total = sum(nums)
        out[name] = (total - idle, total)
    return out


def cpu_percent(
    prev: Mapping[str, tuple[int, int]], cur: Mapping[str, tuple[int, int]]
) -> dict[str, float]:
    out = {}
    for name, (busy, total) in cur.items():
        if name not in prev:
            continue
        d_total = total - prev[name][1]
        if d_total > 0:
            out[name] = 100.0 * (busy - prev[name][0]) / d_total
    return out


def parse_meminfo(text: str) -> dict[str, float]:
    """Memory gauges in bytes, and the used fraction in percent."""
    kb = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            kb[key] = int(parts[0]) * 1024
    out = {}
    if "MemTotal" in kb and "MemAvailable" in kb:
        out["mem_total"] = float(kb["MemTotal"])
        out["mem_available"] = float(kb["MemAvailable"])
        out["mem_used"] = float(kb["MemTotal"] - kb["MemAvailable"])
        out["mem_used_pct"] = 100.0 * out["mem_used"] / kb["MemTotal"] if kb["MemTotal"] else 0.0
    if "SwapTotal" in kb and "SwapFree" in kb:
        out["swap_used"] = float(kb["SwapTotal"] - kb["SwapFree"])
    return out


def parse_diskstats(text: str, keep=lambda dev: True) -> dict[str, tuple[int, int]]:
    """Per device: (bytes read, bytes written) since boot."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 10 or not keep(parts[2]):
            continue
        out[parts[2]] = (int(parts[5]) * SECTOR, int(parts[9]) * SECTOR)
    return out


def parse_netdev(text: str) -> dict[str, tuple[int, int]]:
    """Per interface: (bytes received, bytes sent) since boot."""
    out = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) >= 9:
            out[name.strip()] = (int(parts[0]), int(parts[8]))
    return out


def rates(
    prev: Mapping[str, tuple[int, int]], cur: Mapping[str, tuple[int, int]], seconds: float
) -> dict[str, tuple[float, float]]:
    """Per key, both counters' increase per second (a counter reset gives no rate)."""
    out = {}
    if seconds <= 0:
        return out
    for key, (a, b) in cur.items():
        if key in prev and a >= prev[key][0] and b >= prev[key][1]:
            out[key] = ((a - prev[key][0]) / seconds, (b - prev[key][1]) / seconds)
    return out
