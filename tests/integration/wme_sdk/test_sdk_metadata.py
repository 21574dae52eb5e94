"""The SDK's metadata calls: codes, languages, projects, namespaces (list and one, with the
``fields`` and ``filters`` its ``Request`` sends). Each parsed object must equal what the
server sent, and that must be the projects and languages of the snapshots built."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.wme_sdk import assert_parsed
from tests.integration.wme_sdk.sdk import served
from tests.integration.wme_sdk.server import WMEServer

pytestmark = pytest.mark.integration

LIST_AND_ONE = [
    ("get_codes", "codes", "get_code", "wiki"),
    ("get_languages", "languages", "get_language", "el"),
    ("get_projects", "projects", "get_project", "elwikivoyage"),
    ("get_namespaces", "namespaces", "get_namespace", 10),
]


@pytest.mark.parametrize(("many", "path", "one", "ident"), LIST_AND_ONE)
def test_list_and_one(api: Any, wme_server: WMEServer, token: str, many: str, path: str,
                      one: str, ident: str | int) -> None:
    got = getattr(api, many)()
    sent = served(wme_server, token, path)
    assert got and len(got) == len(sent)
    for obj, item in zip(got, sent, strict=True):
        assert_parsed(obj, item)
    single = getattr(api, one)(ident)
    assert_parsed(single, served(wme_server, token, f"{path}/{ident}"))
    assert single.identifier == ident


def test_projects_are_the_built_ones(api: Any, wme_server: WMEServer) -> None:
    built = sorted({s.split("_namespace_")[0] for s in wme_server.snapshots})
    projects = api.get_projects()
    assert sorted(p.identifier for p in projects) == built
    by_id = {p.identifier: p for p in projects}
    assert by_id["enwiki"].url == "https://en.wikipedia.org"
    assert by_id["elwikivoyage"].in_language.identifier == "el"
    assert by_id["elwikivoyage"].code == "wikivoyage"
    assert sorted(lang.identifier for lang in api.get_languages()) == ["de", "el", "en", "simple"]
    assert {n.identifier for n in api.get_namespaces()} == {0, 6, 10, 14}


def test_fields_and_filters(api: Any, wme_server: WMEServer, token: str) -> None:
    from modules.api.api_client import Filter, Request

    req = Request(fields=["identifier", "in_language.identifier"],
                  filters=[Filter("in_language.identifier", "el")])
    got = api.get_projects(req)
    sent = served(wme_server, token, "projects", req.to_json())
    assert [p.identifier for p in got] == ["elwikivoyage"]
    assert_parsed(got[0], sent[0])
    assert got[0].url is None and got[0].name is None  # only the fields asked for
    # The dict form of filters the SDK also accepts.
    assert [c.identifier for c in api.get_codes(Request(filters={"identifier": "wikivoyage"}))
            ] == ["wikivoyage"]
