"""One `/query` target's frames, from what its nodes answered (pure).

Each target is answered on its own: a series gets its points, or, when it
has none because something failed, an empty frame carrying an error notice
(`meta.notices`, severity "error"). Both Grafana JSON plugins hand every
frame to Grafana's `toDataFrame`, which keeps `meta`, and Grafana shows a
frame's notices in the panel header (a warning sign whose tooltip is the
text; the inspector lists them all). So a bad target tells the Grafana user
why, while the other targets of the same panel are drawn; the HTTP answer
stays 200. An error names the target, the node and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumers.grafana import frames, protocol, replies
from consumers.grafana.catalog import Series


@dataclass
class NodeResult:
    """One node's answer for one reduction: its columns, or why the call failed."""

    columns: replies.Columns | None = None
    failure: str | None = None


def target_frames(
    target: protocol.Target,
    series: list[Series],
    problems: list[str],
    results: dict[tuple[str, str], NodeResult],
    events: dict[str, list[dict]],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in series:
        result = results.get((s.node, target.reduce)) or NodeResult(failure="not asked")
        kind = s.meta["type"]
        why = result.failure
        if why is None and result.columns is not None:
            why = result.columns.errors.get(s.field)
        if why is not None:
            out.append(
                frames.error_frame(s.name, f"{s.name}: {why}", target.ref_id, target.table, kind)
            )
            continue
        col = result.columns.series.get(s.field) if result.columns is not None else None
        if col is not None and col[0].shape[0]:
            if target.table:
                out.append(frames.table(s.name, *col, kind, target.ref_id))
            else:
                out.append(
                    frames.timeseries(s.name, *col, kind, target.ref_id, s.meta.get("units", ""))
                )
        elif target.table:
            out.append(frames.empty_table(s.name, kind, target.ref_id))
        else:
            out.append(frames.empty_series(s.name, target.ref_id))
    wants_events = any(f == protocol.EVENTS for _, f in target.pairs)
    if not series and wants_events:
        rows = sorted(
            (e for n, f in target.pairs if f == protocol.EVENTS for e in events.get(n, [])),
            key=lambda e: e["time"],
        )
        out.append(frames.events_table(target.text, rows, target.ref_id))
    if problems:
        message = f"{target.text}: " + "; ".join(problems)
        out.append(frames.error_frame(target.text, message, target.ref_id, target.table))
    elif not series and not wants_events:  # nothing matched (a filter, an empty node)
        out.append(
            frames.empty_table(target.text, "number", target.ref_id)
            if target.table
            else frames.empty_series(target.text, target.ref_id)
        )
    return out
