"""The `weather` kind: a weather-station archive, one CSV file a day."""

from __future__ import annotations

from obsmesh.kinds import Demo, NodeKind, Simulator
from obsmesh.layout import DemoContext, Service
from obsmesh.settings import POSITIVE, Section, Setting, at_least


class Settings(Section):
    section = "weather"
    dir = Setting("", "directory of YYYY-MM-DD.csv station files", flag=True)
    poll = Setting(0.25, "seconds between looks at the directory", check=POSITIVE)
    days = Setting(7, "days of archive to load at start", flag=True, check=at_least(0))

    @classmethod
    def validate(cls, values, mesh):
        if not values["dir"]:
            raise ValueError("the weather node needs a directory (--dir or OBSMESH_WEATHER_DIR)")
        return values


def demo(d: DemoContext) -> list[Service]:
    """A simulated station writing today's file (and three days of history) for the node."""
    where = d.path("weather")
    return [
        d.simulator("weather", where, where=f"writes {where}"),
        d.node("--dir", where, where=f"node weather ({where})"),
    ]


KIND = NodeKind(
    name="weather",
    description="a weather-station archive (one file a day), the newest rows live",
    settings=Settings,
    build="nodes.weather.node:build",
    simulators=(Simulator("weather", "nodes.weather.simulator", "a station writing daily files"),),
    demo=Demo(demo),
)
