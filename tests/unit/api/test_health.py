from __future__ import annotations

from typing import Any

from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.cli import build_parser
from feedserver.errors import StorageError
from tests.unit.api.conftest import World


def test_metrics_by_route_template(world: World) -> None:
    registry = CollectorRegistry()
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=registry)
    with TestClient(app) as c:
        c.get("/v2/snapshots/enwiki_namespace_0", headers=world.headers(world.key_a))
        c.get("/v2/snapshots/enwiki_namespace_0/download", headers=world.headers(world.key_a))
        c.get("/no/such/path/42")
        text = c.get("/metrics").text

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    route = "/v2/snapshots/{identifier}"
    assert value("feedserver_http_requests_total", route=route, method="GET",
                 status="200") == 1
    assert value("feedserver_http_requests_total", route="unmatched", method="GET",
                 status="404") == 1
    size = world.manifests["enwiki_namespace_0"].size.value
    dl = value("feedserver_http_response_bytes_total", route=route + "/download")
    assert dl is not None and dl >= size
    assert "feedserver_http_request_duration_seconds_bucket" in text
    assert "/no/such/path" not in text  # raw paths never become labels


class BrokenBlobs:
    def exists(self, key: str) -> bool:
        raise StorageError("bucket unreachable")

    def local_path(self, key: str) -> None:  # asked once at start-up: a remote store
        return None


def test_readyz_reports_failures(world: World) -> None:
    app = build_app(world.settings, blobs=BrokenBlobs(), db=world.db,  # type: ignore[arg-type]
                     accounts=world.accounts, state=world.state, snapshots=object(),  # type: ignore[arg-type]
                     registry=CollectorRegistry())
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
    assert r.status_code == 503
    body: dict[str, Any] = r.json()
    assert body["blobs"].startswith("failed") and body["database"] == "ok"


def test_serve_command_parses() -> None:
    args = build_parser().parse_args(["serve", "--port", "9999", "--workers", "2"])
    assert (args.port, args.workers, args.host) == (9999, 2, None)
