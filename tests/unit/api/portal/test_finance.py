"""Finance pages: customers by name, drill-down, invoices traced to their rows, corrections,
verification, and downloads that agree with ``feedserver usage report``."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from feedserver.cli.usage import cmd_report
from feedserver.metering.batch_rows import batch_rows
from feedserver.metering.journal import decode_line
from feedserver.metering.ledger import Ledger
from feedserver.metering.reports import GB
from feedserver.metering.response_usage import line, nanos
from tests.unit.api.portal.conftest import DAY1, MONTH, World, sign_in
from tests.unit.metering.conftest import FakePrincipal


@pytest.fixture
def finance(client: TestClient[Any]) -> tuple[TestClient[Any], str]:
    return client, sign_in(client, "finance")


def test_overview_lists_customers_by_name_with_totals_per_feed(
        finance: tuple[TestClient[Any], str], world: World) -> None:
    client, _ = finance
    page = client.get(f"/usage/finance?month={MONTH}")
    assert page.status_code == 200
    html = page.text
    assert ">Acme</a>" in html and ">Globex</a>" in html
    assert world.ids["Acme"] not in re.sub(r'href="[^"]*"', "", html)  # ids only in links
    assert "2.50 GB" in html and "1.00 GB" in html  # snapshots, chunks: humanised
    assert "Bytes per day, by feed" in html and "<rect" in html
    assert "Never verified" in html and "seq <span class=\"num\">" in html
    customers = client.get(f"/usage/finance/download/customers.json?month={MONTH}").json()
    acme = next(c for c in customers if c["customer"] == "Acme")
    assert (acme["snapshots_bytes"], acme["chunks_bytes"], acme["ondemand_requests"]) == (
        2_500_000_000, 1_000_000_000, 1)
    assert acme["total"] == "100.32"  # 100 base + 3.50004 GB x 0.09 + 1 lookup x 0.0005


def test_drill_down_customer_feed_day(finance: tuple[TestClient[Any], str],
                                      world: World) -> None:
    client, _ = finance
    acme = world.ids["Acme"]
    page = client.get(f"/usage/finance/customers/{acme}?month={MONTH}")
    assert page.status_code == 200 and "<h1>Acme" in page.text
    assert f'href="/usage/finance/customers/{acme}/feeds/snapshots?month={MONTH}"' in page.text
    feed = client.get(f"/usage/finance/customers/{acme}/feeds/snapshots?month={MONTH}")
    day = DAY1.strftime("%Y-%m-%d")
    assert f'href="/usage/finance/customers/{acme}/feeds/snapshots/days/{day}"' in feed.text
    rows = client.get(f"/usage/finance/customers/{acme}/feeds/snapshots/days/{day}")
    assert rows.status_code == 200
    snapshot_ids = [r.usage_id for r in world.records["Acme"] if r.feed == "snapshots"]
    assert all(f'id="row-{uid}"' in rows.text for uid in snapshot_ids)
    # the other customer's rows never appear on Acme's pages
    assert not any(r.usage_id in rows.text for r in world.records["Globex"])
    for bad in (f"/usage/finance/customers/{acme}/feeds/nope",
                f"/usage/finance/customers/{acme}/feeds/snapshots/days/2026-02-30",
                "/usage/finance/customers/cus_nobody"):
        assert client.get(bad).status_code == 404, bad
    assert client.get("/usage/finance?month=0000-01").status_code == 422


def test_invoice_lines_download_exactly_their_rows(finance: tuple[TestClient[Any], str],
                                                   world: World) -> None:
    client, _ = finance
    acme = world.ids["Acme"]
    invoice = client.get(f"/usage/finance/download/invoice.json?month={MONTH}&customer={acme}")
    lines = {line["line"]: line for line in invoice.json()}
    assert set(lines) == {"base_fee", "egress", "ondemand"}
    page = client.get(f"/usage/finance/customers/{acme}?month={MONTH}").text
    for key, unit_size in (("egress", GB), ("ondemand", Decimal(1000))):
        link = f"/usage/finance/download/rows.csv?month={MONTH}&amp;customer={acme}&amp;line={key}"
        assert link in page
        table = list(csv.DictReader(io.StringIO(client.get(link.replace("&amp;", "&")).text)))
        assert table and {r["customer_id"] for r in table} == {acme}
        assert Decimal(sum(int(r["quantity"]) for r in table)) / unit_size == Decimal(
            lines[key]["quantity"])


def test_void_shows_original_correction_and_net(finance: tuple[TestClient[Any], str],
                                                world: World) -> None:
    client, csrf = finance
    acme = world.ids["Acme"]
    target = next(r for r in world.records["Acme"] if r.feed == "snapshots" and r.meter == "bytes")
    day = DAY1.strftime("%Y-%m-%d")
    back = f"/usage/finance/customers/{acme}/feeds/snapshots/days/{day}"
    r = client.post("/usage/finance/corrections", follow_redirects=False, data={
        "csrf": csrf, "kind": "void", "usage_id": target.usage_id, "reason": "test traffic",
        "key": "form-1", "return_to": back})
    assert (r.status_code, r.headers["location"]) == (303, back + "?notice=void")
    page = client.get(back + "?notice=void").text
    assert "Row voided" in page and "net 0 B" in page and "test traffic · finance" in page
    # the same form again (double click): nothing more is appended
    client.post("/usage/finance/corrections", data={
        "csrf": csrf, "kind": "void", "usage_id": target.usage_id, "reason": "test traffic",
        "key": "form-1", "return_to": back})
    report = client.get(f"/usage/finance/download/report.json?month={MONTH}&customer={acme}")
    c = report.json()["customers"][0]
    assert c["original"]["bytes"] == 3_500_040_000
    assert c["corrections"]["bytes"] == -2_500_000_000
    assert c["totals"]["bytes"] == 1_000_040_000
    # a second void of the same row is refused with a clear page, not a 500
    again = client.post("/usage/finance/corrections", data={
        "csrf": csrf, "kind": "void", "usage_id": target.usage_id, "reason": "again",
        "return_to": back})
    assert again.status_code == 409 and "already void" in again.text


def test_amend_and_credit_from_forms(finance: tuple[TestClient[Any], str], world: World) -> None:
    client, csrf = finance
    acme = world.ids["Acme"]
    target = next(r for r in world.records["Acme"] if r.feed == "chunks" and r.meter == "bytes")
    for data, status in (({"kind": "amend", "usage_id": target.usage_id, "quantity": "-3",
                           "reason": "overcount"}, 422),
                         ({"kind": "amend", "usage_id": target.usage_id, "quantity": "400000000",
                           "reason": "x"}, 422),  # reason too short
                         ({"kind": "amend", "usage_id": target.usage_id,
                           "quantity": "400,000,000", "reason": "overcount"}, 303),
                         ({"kind": "credit", "customer_id": acme, "amount": "12.50",
                           "reason": "outage"}, 303),
                         ({"kind": "credit", "customer_id": "cus_nobody", "amount": "1",
                           "reason": "outage"}, 404)):
        r = client.post("/usage/finance/corrections", follow_redirects=False,
                        data={"csrf": csrf, **data})
        assert r.status_code == status, (data, r.text[:300])
    invoice = client.get(f"/usage/finance/download/invoice.json?month={MONTH}&customer={acme}")
    lines = {line["line"]: line for line in invoice.json()}
    assert lines["credit"]["amount"] == "-12.50"
    assert Decimal(lines["egress"]["quantity"]) == Decimal("2.90004")  # 2.5 + 0.4 + 0.00004
    corrections = client.get(f"/usage/finance/download/corrections.csv?month={MONTH}").text
    assert "amend" in corrections and "credit" in corrections and "outage" in corrections


def test_verify_now_is_kept_and_shown(finance: tuple[TestClient[Any], str], world: World) -> None:
    client, csrf = finance
    r = client.post("/usage/finance/verify", data={"csrf": csrf, "month": MONTH},
                    follow_redirects=False)
    assert r.headers["location"] == f"/usage/finance?month={MONTH}&notice=verify-ok#ledger"
    page = client.get(r.headers["location"]).text
    assert "Chain intact" in page and "by portal:finance" in page
    world.db.execute("UPDATE usage_ledger SET quantity = 1 WHERE seq = 2")
    client.post("/usage/finance/verify", data={"csrf": csrf, "month": MONTH})
    page = client.get(f"/usage/finance?month={MONTH}").text
    assert "Verification FAILED" in page and "row seq 2" in page


def test_report_download_is_the_cli_report(finance: tuple[TestClient[Any], str], world: World,
                                           tmp_path: Path) -> None:
    client, _ = finance
    out = tmp_path / "report.csv"
    cmd_report(world.settings, month=MONTH, output=out)
    portal = client.get(f"/usage/finance/download/report.csv?month={MONTH}")
    assert portal.headers["content-disposition"] == (
        f'attachment; filename="feedserver-{MONTH}-report.csv"')
    assert portal.content == out.read_bytes()
    assert b",Acme," in portal.content  # customers by name in the report too
    as_json = client.get(f"/usage/finance/download/report.json?month={MONTH}")
    assert msgspec.json.decode(as_json.content)["month"] == MONTH


def test_every_table_downloads_as_csv_and_json(finance: tuple[TestClient[Any], str],
                                               world: World) -> None:
    client, _ = finance
    acme = world.ids["Acme"]
    query = f"month={MONTH}&customer={acme}&feed=snapshots"
    for name in ("customers", "feeds", "feed-days", "invoice", "quotas", "corrections", "rows",
                 "report"):
        as_csv = client.get(f"/usage/finance/download/{name}.csv?{query}")
        as_json = client.get(f"/usage/finance/download/{name}.json?{query}")
        assert as_csv.status_code == as_json.status_code == 200, name
        assert as_csv.headers["content-type"].startswith("text/csv")
        msgspec.json.decode(as_json.content)
    assert client.get("/usage/finance/download/secrets.csv").status_code == 404
    assert client.get("/usage/finance/download/feeds.xml").status_code == 404
    assert client.get(f"/usage/finance/download/feeds.csv?month={MONTH}").status_code == 422


def test_a_batch_row_links_to_the_responses_it_sums(finance: tuple[TestClient[Any], str],
                                                     world: World) -> None:
    # With rows per batch (the appender's default) a day shows a batch's group rows; finance
    # still sees every request: the row links to the batch's evidence, read back and checked.
    client, _ = finance
    acme = world.ids["Acme"]
    lines = [line(nanos(DAY1), FakePrincipal(customer_id=acme, api_key_id="key_test"),
                  {"feed": "snapshots", "project": "enwiki", "response_id": f"b-{i}",
                   "request_id": f"client-{i}", "bytes_sent": 1000 + i})
             for i in range(3)]
    batch = batch_rows(b"".join(lines))
    Ledger(world.db).append_batch(batch)
    day = client.get(f"/usage/finance/customers/{acme}/feeds/snapshots/days/"
                     f"{DAY1:%Y-%m-%d}").text
    href = f"/usage/finance/batches/{batch.evidence.digest}"
    assert f'href="{href}"' in day
    page = client.get(href)
    assert page.status_code == 200
    per_response = [r for entry in lines for r in decode_line(entry)]
    assert all(r.usage_id in page.text for r in per_response)
    assert "client-0" in page.text and "3 responses" in page.text
    for bad in ("0" * 64, "%E2%80%AE" * 40, "x" * 5000):  # unknown, hostile
        assert client.get(f"/usage/finance/batches/{bad}").status_code == 404
    world.db.execute("UPDATE usage_evidence SET lines = ?", (b"edited",))
    assert client.get(href).status_code == 500  # the page says the evidence is damaged

