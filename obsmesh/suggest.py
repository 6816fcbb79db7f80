"""'Did you mean …?' for a mistyped node or field name (standard library only)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_SUGGESTIONS = 3
CUTOFF = 0.6


def close_names(word: str, names: Iterable[str], n: int = MAX_SUGGESTIONS) -> list[str]:
    """The names most like `word`: close spellings first, then names that
    contain it or that it contains ignoring case (`temp` -> `temperature`)."""
    pool = sorted({str(x) for x in names})
    scored = []
    for name in pool:
        ratio = difflib.SequenceMatcher(None, word, name).ratio()
        if ratio >= CUTOFF:
            scored.append((ratio, name))
    scored.sort(key=lambda x: (-x[0], x[1]))
    # only the names about as close as the closest one
    found = [name for ratio, name in scored if ratio >= scored[0][0] - 0.1][:n] if scored else []
    low = word.lower()
    for name in pool:
        if len(found) >= n:
            break
        if name not in found and low and (low in name.lower() or name.lower() in low):
            found.append(name)
    return found


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """ "; did you mean 'x' or 'y'?" or "" when nothing is close."""
    found = close_names(word, names)
    if not found:
        return ""
    quoted = [repr(f) for f in found]
    joined = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"; did you mean {joined}?"
