"""Prometheus metrics: HTTP traffic, plus the counters the sync engine fills."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

http_requests = Counter(
    "pbx_entra_http_requests_total",
    "HTTP requests served, by route template, method and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
http_latency = Histogram(
    "pbx_entra_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
sync_runs = Counter(
    "pbx_entra_sync_runs_total",
    "Sync runs finished, by trigger and final status.",
    ["trigger", "status"],
    registry=REGISTRY,
)
sync_objects = Counter(
    "pbx_entra_sync_objects_total",
    "Objects changed by sync runs, by scope and action.",
    ["scope", "action"],
    registry=REGISTRY,
)
graph_requests = Counter(
    "pbx_entra_graph_requests_total",
    "Requests made to Microsoft Graph and the identity platform, by status class.",
    ["status"],
    registry=REGISTRY,
)
graph_throttled = Counter(
    "pbx_entra_graph_throttled_total",
    "Graph responses that asked us to back off (429, 503, 504).",
    registry=REGISTRY,
)
notifications_received = Counter(
    "pbx_entra_notifications_received_total",
    "Graph change notifications received, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)

change_events_dropped = Counter(
    "pbx_entra_change_events_dropped_total",
    "Change events that could not concern their PBX, so counted toward no run, by resource kind.",
    ["kind"],
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)
