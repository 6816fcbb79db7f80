"""obsmesh: a WAMP router-centric microservice mesh for live scientific data."""

__version__ = "0.1.0"
