"""Property tests of every HTTP parameter parser: whatever text a client puts in ``limit``,
``version``, ``month``, ``fields``, ``filters``, a POST body, ``Range`` or ``Last-Event-ID``,
the answer is a success or a 4xx problem, never a 5xx. Then the cases that were 500s or wrong
200s on main, pinned by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.api.query import MAX_LIMIT, Query, from_body, from_params
from feedserver.api.ranges import parse_range
from feedserver.api.realtime_params import body_from_params, check, parse_last_event_id
from feedserver.errors import FeedError, InvalidParameter
from feedserver.feeds.batches.hours import parse_date_hour, parse_hour_arg
from feedserver.metering.months import month_bounds, parse_month
from tests.unit.api.conftest import World, build_world

SNAP = "enwiki_namespace_0"
# Text that breaks hand-written parsers: Unicode digits (\uff11 is a fullwidth 1), signs,
# exponents, huge numbers, blanks.
NASTY = ["²", "٣", "1²", "-5", "+5", " 5", "5 ", "1e29", "1e3", "0x10", "5_0", "", "0",
         str(2**70), "9" * 40, "-0", "1.0", "NaN", "\x00", "%", "\uff11"]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=25),
                 st.integers(min_value=-(2**80), max_value=2**80).map(str))
PATHS = [f"/v2/snapshots/{SNAP}", f"/v2/snapshots/{SNAP}/chunks", f"/v2/snapshots/{SNAP}/chunks/0",
         f"/v2/snapshots/{SNAP}/download", f"/v2/snapshots/{SNAP}/chunks/0/download",
         "/v2/snapshots", "/v2/projects", "/v2/articles/Page%201", f"/v2/diffs/{SNAP}",
         f"/v2/diffs/{SNAP}/download", f"/v2/diffs/{SNAP}/chunks", "/v2/diffs"]
HYPO = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("params"))


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient[Any]]:
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


def _ok_or_4xx(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


# --- over HTTP -------------------------------------------------------------------------------


@HYPO
@given(path=st.sampled_from(PATHS), name=st.sampled_from(["limit", "version", "fields",
                                                          "filters", "month"]), value=text)
def test_any_query_parameter_value(client: TestClient[Any], world: World, path: str,
                                   name: str, value: str) -> None:
    _ok_or_4xx(client.get(path, params={name: value}, headers=world.headers(world.key_a)))


@HYPO
@given(month=text)
def test_any_usage_month(client: TestClient[Any], world: World, month: str) -> None:
    _ok_or_4xx(client.get("/v1/usage", params={"month": month},
                          headers=world.headers(world.key_a)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)


@HYPO
@given(path=st.sampled_from([p for p in PATHS if "download" not in p]),
       body=st.dictionaries(st.sampled_from(["limit", "fields", "filters", "x"]), json_values,
                            max_size=3))
def test_any_post_body(client: TestClient[Any], world: World, path: str,
                       body: dict[str, Any]) -> None:
    _ok_or_4xx(client.post(path, content=msgspec.json.encode(body),
                           headers=world.headers(world.key_a)))


@HYPO
@given(header=st.one_of(st.text(max_size=40), st.from_regex(
    r"bytes=[0-9²]{0,21}-[0-9²]{0,21}(,[0-9]{0,3}-[0-9]{0,3}){0,3}", fullmatch=True)))
def test_any_range_header_over_http(client: TestClient[Any], world: World, header: str) -> None:
    try:
        raw = header.encode("latin-1")
    except UnicodeEncodeError:
        return  # not an HTTP header value at all
    headers: dict[str, str | bytes] = {**world.headers(world.key_a), "Range": raw}
    _ok_or_4xx(client.get(f"/v2/snapshots/{SNAP}/download", headers=headers))


@pytest.mark.parametrize(("path", "param"), [
    (f"/v2/snapshots/{SNAP}", "version"), (f"/v2/snapshots/{SNAP}/download", "version"),
    (f"/v2/snapshots/{SNAP}/chunks", "version"), (f"/v2/snapshots/{SNAP}/chunks/0", "version"),
    (f"/v2/snapshots/{SNAP}/chunks/0/download", "version"), (f"/v2/diffs/{SNAP}", "version"),
    (f"/v2/diffs/{SNAP}/download", "version"), ("/v2/snapshots", "limit"),
    (f"/v2/snapshots/{SNAP}/chunks", "limit"), ("/v2/articles/Page%201", "limit"),
    ("/v2/diffs", "limit"), ("/v2/projects", "limit")])
def test_superscript_digits_are_422_not_500(client: TestClient[Any], world: World, path: str,
                                            param: str) -> None:
    # "²".isdigit() is True, int("²") raises: these were 500s.
    response = client.get(f"{path}?{param}=²", headers=world.headers(world.key_a))
    assert response.status_code == 422, response.text[:300]


@pytest.mark.parametrize("month", ["9999-12", "0000-01", "2026-13", "٢٠٢٤-01"])
def test_usage_months_out_of_range_are_422(client: TestClient[Any], world: World,
                                           month: str) -> None:
    response = client.get(f"/v1/usage?month={month}", headers=world.headers(world.key_a))
    assert response.status_code == 422, response.text


# -5 is not here: WME's binding takes a negative limit (see the next test); past the bound it is
# still a 422.
@pytest.mark.parametrize("limit", [b"-100001", b"1e29", str(2**70).encode(),
                                   str(-(2**70)).encode(), b"1.5", b'"3"'])
def test_bad_limit_in_a_body_is_422(client: TestClient[Any], world: World,
                                    limit: bytes) -> None:
    for path in ("/v2/snapshots", "/v2/articles/Page%201", f"/v2/snapshots/{SNAP}/chunks"):
        response = client.post(path, content=b'{"limit": ' + limit + b"}",
                               headers=world.headers(world.key_a))
        assert response.status_code == 422, (path, response.text)


@pytest.mark.parametrize("limit", [-5, -1])
def test_negative_limit_is_wmes_no_limit_not_a_cut(client: TestClient[Any], world: World,
                                                   limit: int) -> None:
    # main once answered `limit: -5` with items[:-5], silently dropping the last five. WME
    # accepts a negative limit: lists then have no limit, on-demand uses its default.
    h = world.headers(world.key_a)
    for path in ("/v2/snapshots", f"/v2/snapshots/{SNAP}/chunks", "/v2/articles/Page%201"):
        everything = client.post(path, json={}, headers=h)
        response = client.post(path, json={"limit": limit}, headers=h)
        assert response.status_code == everything.status_code, (path, response.text)
        assert response.json() == everything.json(), path
        by_get = client.get(path, params={"limit": str(limit)}, headers=h)
        assert by_get.status_code == everything.status_code, (path, by_get.text)
        assert by_get.json() == everything.json(), path


# --- the pure parsers ----------------------------------------------------------------------------


@given(st.dictionaries(st.sampled_from(["fields", "filters", "limit", "other"]),
                       st.lists(text, min_size=1, max_size=3), max_size=4))
def test_from_params_never_raises_anything_but_a_feed_error(params: dict[str, list[str]]
                                                           ) -> None:
    try:
        query = from_params(params)
    except FeedError as exc:
        assert 400 <= exc.status < 500
        return
    assert query.limit is None or -MAX_LIMIT <= query.limit <= MAX_LIMIT


@given(st.binary(max_size=80) | json_values.map(msgspec.json.encode))
def test_from_body_never_raises_anything_but_a_feed_error(body: bytes) -> None:
    try:
        query = from_body(body)
    except FeedError as exc:
        assert 400 <= exc.status < 500
        return
    assert isinstance(query, Query)
    assert query.limit is None or -MAX_LIMIT <= query.limit <= MAX_LIMIT


@given(st.integers(min_value=0, max_value=2**70), st.text(max_size=60) | st.from_regex(
    r"bytes=([0-9]{0,22}-[0-9]{0,22},?){1,20}", fullmatch=True))
def test_parse_range_answers_ranges_within_the_size_or_a_4xx(size: int, header: str) -> None:
    try:
        ranges = parse_range(header, size)
    except FeedError as exc:
        assert exc.status in (400, 416)
        return
    for r in ranges or ():
        assert 0 <= r.start < r.stop <= size


@given(text)
def test_parse_month_gives_a_real_month_or_422(month: str) -> None:
    try:
        parse_month(month)
    except InvalidParameter:
        return
    start, end = month_bounds(month)  # both ends are real dates: no year 0 or 10000
    assert start < end


@given(text, text)
def test_parse_date_hour_gives_an_hour_or_422(date: str, hour: str) -> None:
    for call in (lambda: parse_date_hour(date, hour), lambda: parse_hour_arg(f"{date}T{hour}")):
        try:
            when = call()
        except InvalidParameter:
            continue
        assert when.minute == 0 and when.tzinfo is not None


@given(st.text(max_size=60) | st.from_regex(r"([0-9²]{1,20}:[0-9]{1,25},?){1,4}",
                                            fullmatch=True))
def test_parse_last_event_id(raw: str) -> None:
    try:
        positions = parse_last_event_id(raw)
    except InvalidParameter:
        return
    assert all(p >= 0 and 0 <= o < 10**18 for p, o in positions.items())


@given(st.dictionaries(st.sampled_from(["parts", "offsets", "since", "since_per_partition",
                                        "fields", "filters"]),
                       st.lists(text | json_values.map(lambda v: msgspec.json.encode(v).decode()),
                                min_size=1, max_size=2), max_size=4))
def test_realtime_get_parameters(params: dict[str, list[str]]) -> None:
    try:
        parsed = check(body_from_params(params))
    except FeedError as exc:
        assert 400 <= exc.status < 500
        return
    assert all(0 <= o <= 2**63 - 1 for o in parsed.offsets.values())
