"""A node's `setup()` runs once its whole `__init__` (the kind's too) returned.

A kind calls `super().__init__(...)` first and then sets its own state; work
that may need that state (declaring the fields known at start) goes in
`setup()`, which the metaclass calls after construction. So the base never
calls an overridable method on a half-built object.
"""

from __future__ import annotations

from typing import Any


class SetUpAfterInit(type):
    """Metaclass: `cls(...)` builds the object, then calls its `setup()`."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        obj.setup()
        return obj
