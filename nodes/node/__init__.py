"""The parts of a data node, each with one job; `nodes/base.py` composes them
into `DataNode`, the class a kind subclasses.

- `session.py`: the WAMP session (join, register, announce, name conflicts, leave);
- `live.py`: live batching and publishing to the topics someone subscribes to;
- `query.py`: the query engine (`get_fields`, `get_data`) over a small source protocol;
- `health.py`: sources, counters, the last error and events (get_status, get_events);
- `setup.py`: `setup()` called once construction finished;
- `runner.py`: running a node as a process.
"""
