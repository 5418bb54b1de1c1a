"""Microsoft Graph v1.0 routes, mounted under /v1.0.

One dispatcher (`emulator.graph.http`) serves the HTTP requests and the sub-requests of `$batch`;
the modules below register their routes on it when imported.
"""

from emulator.graph import applications, batch, delta, directory, mail, presence, subscriptions
from emulator.graph.http import dispatch, starlette_routes
from emulator.graph.subscriptions import lifespan

graph_routes = starlette_routes()

__all__ = [
    "applications",
    "batch",
    "delta",
    "directory",
    "dispatch",
    "graph_routes",
    "lifespan",
    "mail",
    "presence",
    "subscriptions",
]
