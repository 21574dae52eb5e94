"""``/v2/diffs/{identifier}/{base}-{version}``: the README documented it, the API answered 404.
A diff named by its pair serves metadata, manifest and download like ``?version=N``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.feeds.diffs.build import build_diff
from feedserver.plans import Plan
from tests.unit.api.conftest import World, build_world

ID = "dewiki_namespace_0"


@pytest.fixture(scope="module")
def diff_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, str]:
    world = build_world(tmp_path_factory.mktemp("diffs"))
    assert build_diff(world.blobs, world.settings, ID) is not None  # dewiki ns0: v1 -> v2
    world.accounts.create_plan(Plan(name="de-diffs", feeds=["diffs"], projects=["dewiki"]))
    world.accounts.create_customer("delta", "de-diffs")
    return world, world.accounts.create_api_key("delta")[1]


@pytest.fixture
def client(diff_world: tuple[World, str]) -> Iterator[TestClient[Any]]:
    world, _ = diff_world
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


def test_pair_routes_serve_the_same_diff_as_version(client: TestClient[Any],
                                                    diff_world: tuple[World, str]) -> None:
    world, key = diff_world
    auth = world.headers(key)
    by_version = client.get(f"/v2/diffs/{ID}?version=2", headers=auth)
    assert by_version.status_code == 200
    meta = client.get(f"/v2/diffs/{ID}/1-2", headers=auth)
    assert meta.status_code == 200, meta.text
    assert meta.json()["sha256"] == by_version.json()["sha256"]
    assert meta.json()["base_version"] == 1 and meta.json()["version_number"] == 2
    manifest = client.get(f"/v2/diffs/{ID}/1-2/manifest", headers=auth)
    assert manifest.status_code == 200
    assert msgspec.json.decode(manifest.content)["sha256"] == meta.json()["sha256"]
    whole = client.get(f"/v2/diffs/{ID}/1-2/download", headers=auth)
    assert whole.status_code == 200
    assert whole.content == client.get(f"/v2/diffs/{ID}/download?version=2",
                                       headers=auth).content
    assert whole.headers["etag"] == f'"sha256:{meta.json()["sha256"]}"'
    # The static sub-resources still win over the pair segment.
    assert client.get(f"/v2/diffs/{ID}/chunks", headers=auth).status_code == 200


# Well-formed but not published: 404; malformed (the declared pattern refuses it): 422.
@pytest.mark.parametrize(("pair", "status"), [("2-3", 404), ("0-2", 422), ("x-y", 422),
                                              ("2-1", 404), ("1-2-3", 422)])
def test_unknown_or_malformed_pairs(client: TestClient[Any], diff_world: tuple[World, str],
                                    pair: str, status: int) -> None:
    world, key = diff_world
    response = client.get(f"/v2/diffs/{ID}/{pair}", headers=world.headers(key))
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")


def test_pair_of_a_diff_outside_the_plan_is_forbidden(client: TestClient[Any],
                                                      diff_world: tuple[World, str]) -> None:
    world, _ = diff_world
    # Customer alpha's plan has no diffs at all: 403 before anything is read.
    assert client.get(f"/v2/diffs/{ID}/1-2", headers=world.headers(world.key_a)
                      ).status_code == 403
