"""Every Prometheus metric, declared in one place on a registry the caller passes in.

The app factory (and each worker process) creates one ``Metrics`` on its own
``CollectorRegistry``; tests get a fresh registry, so nothing is global. Add new metrics as
attributes here, grouped by component.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # --- HTTP API ---------------------------------------------------------------------
        # ``route`` is the route template (``/v2/snapshots/{identifier:str}``), never the raw
        # path, so hostile or many distinct URLs cannot blow up the label cardinality.
        self.http_requests = Counter(
            "feedserver_http_requests", "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.http_latency = Histogram(
            "feedserver_http_request_duration_seconds",
            "Time to the response start (headers), by route and method.",
            ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.http_bytes = Counter(
            "feedserver_http_response_bytes", "Response body bytes sent, by route.",
            ["route"], registry=r,
        )
        # --- events consumer ----------------------------------------------------------------
        self.events_consumed = Counter(
            "feedserver_events_consumed", "Source events consumed (valid or not), by topic.",
            ["topic"], registry=r,
        )
        self.events_dead_lettered = Counter(
            "feedserver_events_dead_lettered",
            "Invalid events set aside in the dead-letter store, by reason (json, schema, ...).",
            ["reason"], registry=r,
        )
        self.events_unresolved = Counter(
            "feedserver_events_unresolved",
            "recentchange changes whose page the wiki and the state store no longer know"
            " (deleted again since, never seen): consumed, nothing produced.",
            registry=r,
        )
        self.articles_produced = Counter(
            "feedserver_articles_produced", "Article events appended to the article topic.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "feedserver_consumer_lag", "Source records not yet consumed, by topic.",
            ["topic"], registry=r,
        )
        # --- EventStreams follower and Action API content client --------------------------
        # Labels are closed sets chosen here, never values read from the stream.
        self.eventstreams_events = Counter(
            "feedserver_eventstreams_events",
            "EventStreams events read, by result (appended, duplicate, other_wiki, dead_lettered).",
            ["result"], registry=r,
        )
        self.eventstreams_dead_lettered = Counter(
            "feedserver_eventstreams_dead_lettered",
            "EventStreams frames set aside, by reason (frame, json, schema, unsupported).",
            ["reason"], registry=r,
        )
        self.eventstreams_reconnects = Counter(
            "feedserver_eventstreams_reconnects",
            "EventStreams reconnects, by cause (closed, network, timeout, http, rate_limited,"
            " html).",
            ["cause"], registry=r,
        )
        self.eventstreams_last_event = Gauge(
            "feedserver_eventstreams_last_event_timestamp_seconds",
            "meta.dt of the last EventStreams event appended (its distance to now is the lag).",
            registry=r,
        )
        self.content_requests = Counter(
            "feedserver_content_requests",
            "Action API requests, by result (ok, retry, failed).", ["result"], registry=r,
        )
        self.content_revisions = Counter(
            "feedserver_content_revisions",
            "Revisions asked of the content client, by result (fetched, cached, hidden, missing).",
            ["result"], registry=r,
        )
        # --- usage consumer (distributed metering) -----------------------------------------
        self.usage_records = Counter(
            "feedserver_usage_records",
            "Usage records read from the usage topic, by result (inserted, duplicate, invalid).",
            ["result"], registry=r,
        )
        # --- Structured Contents ------------------------------------------------------------
        # Pages parsed into Structured Contents by snapshot builds, ``diff advance`` and
        # on-demand lookups. A page whose wikitext was broken somewhere is ``degraded`` (its
        # record holds what could be parsed); ``problem`` is the parser's closed set of kinds.
        self.structured_pages = Counter(
            "feedserver_structured_pages",
            "Pages parsed into Structured Contents, by source (build, advance, ondemand) and "
            "result (ok, degraded).", ["source", "result"], registry=r,
        )
        self.structured_problems = Counter(
            "feedserver_structured_problems",
            "Parse problems met while making Structured Contents (one per kind per page), by "
            "source and problem.", ["source", "problem"], registry=r,
        )
