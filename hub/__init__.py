"""The hub: directory of data nodes, hosted by the router or run standalone.

Imports nothing but autobahn, twisted and dependency-free obsmesh modules, because
the router hosts it in crossbar's own virtualenv.
"""

from hub.session import Hub

__all__ = ["Hub"]
