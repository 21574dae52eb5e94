"""The /usage portal in real headless Chromium (Debian's, never a downloaded one), over real HTTP.

Finance signs in, drills down customer -> feed -> day, downloads the month's CSV (which must be
byte for byte what ``feedserver usage report`` prints) and voids a row (the net must change);
a customer signs in and rotates a key (the old key must then be refused by the API). Every page
is checked at 1400 px and 390 px: no table may stick out of its card, and the page may not
scroll sideways. A screenshot of each page is kept under the test's temporary directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedserver.cli.usage import cmd_report
from tests.fixtures.asgi import serve_in_thread
from tests.unit.api.portal.conftest import DAY1, MONTH, PASSWORD, World, build_world

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTHS = (1400, 390)
# For every table: how far its box reaches past its card's (px; > 0.5 is an overflow), and the
# page's sideways scroll. Element boxes, not pixels: independent of fonts and antialiasing.
OVERFLOW = """() => {
  const out = [];
  for (const table of document.querySelectorAll('.card table')) {
    const card = table.closest('.card').getBoundingClientRect();
    const box = table.getBoundingClientRect();
    out.push({card: table.closest('.card').dataset.table || table.closest('.card').id || '?',
              left: card.left - box.left, right: box.right - card.right});
  }
  return {tables: out,
          sideways: document.documentElement.scrollWidth - document.documentElement.clientWidth};
}"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, World]]:
    world = build_world(tmp_path / "world")
    with serve_in_thread(world.app()) as url:
        yield url, world
    world.db.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium missing: run scripts/system-deps.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


class Pages:
    """Visits pages at every width, checking layout and keeping a screenshot of each."""

    def __init__(self, browser: Any, base: str, shots: Path, username: str) -> None:
        self.base, self.shots = base, shots
        self.contexts = {w: browser.new_context(viewport={"width": w, "height": 900})
                         for w in WIDTHS}
        self.pages = {w: c.new_page() for w, c in self.contexts.items()}
        self.errors: list[str] = []
        for page in self.pages.values():
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda exc: self.errors.append(str(exc)))
            page.on("console", lambda msg: self.errors.append(msg.text)
                    if msg.type == "error" else None)
            sign_in(page, base, username)

    @property
    def wide(self) -> Any:
        return self.pages[WIDTHS[0]]

    def check(self, name: str, path: str | None = None) -> None:
        """The current page of the wide browser (or ``path``) at every width."""
        url = self.base + path if path else self.wide.url
        for width, page in self.pages.items():
            if page.url != url:
                page.goto(url)
            page.screenshot(path=str(self.shots / f"{name}-{width}.png"), full_page=True)
            layout = page.evaluate(OVERFLOW)
            bad = [t for t in layout["tables"] if t["left"] > 0.5 or t["right"] > 0.5]
            assert bad == [], f"{name} at {width}px: tables overflow their cards: {bad}"
            assert layout["sideways"] <= 0, f"{name} at {width}px scrolls sideways"

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()
        assert self.errors == []


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/usage")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("nav.nav")


def test_finance_drills_down_downloads_and_voids(server: tuple[str, World], browser: Any,
                                                 tmp_path: Path) -> None:
    base, world = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    pages = Pages(browser, base, shots, "finance")
    page = pages.wide
    page.goto(f"{base}/usage/finance?month={MONTH}")
    customers = page.inner_text("[data-table=customers] tbody")
    assert "Acme" in customers and "Globex" in customers and "cus_" not in customers
    pages.check("finance")

    with page.expect_download() as download:
        page.click("#report-csv")
    saved = tmp_path / "portal-report.csv"
    download.value.save_as(saved)
    cli = tmp_path / "cli-report.csv"
    cmd_report(world.settings, month=MONTH, output=cli)
    assert saved.read_bytes() == cli.read_bytes()

    page.click("[data-table=customers] a:text-is('Acme')")
    page.wait_for_selector("h1:has-text('Acme')")
    egress = page.locator("[data-table=invoice] tbody tr:has-text('egress')")
    assert "3.500 GB" in egress.inner_text()
    pages.check("customer")
    page.click("[data-table=feeds] a:text-is('snapshots')")
    page.wait_for_selector("[data-table=feed-days]")
    pages.check("feed")
    page.click(f"[data-table=feed-days] a:text-is('{DAY1:%Y-%m-%d}')")
    page.wait_for_selector("[data-table=rows]")
    pages.check("day")

    target = next(r for r in world.records["Acme"] if r.feed == "snapshots" and r.meter == "bytes")
    row = page.locator(f"#row-{target.usage_id}")
    row.locator("summary").click()
    row.locator(".void-form input[name=reason]").fill("test traffic from our QA")
    row.locator(".void-form button").click()
    page.wait_for_selector(".banner.ok")
    assert "net 0 B" in page.locator(f"#row-{target.usage_id}").inner_text()
    pages.check("day-after-void")

    page.goto(f"{base}/usage/finance/customers/{world.ids['Acme']}?month={MONTH}")
    egress = page.locator("[data-table=invoice] tbody tr:has-text('egress')")
    assert "1.000 GB" in egress.inner_text()  # 3.5 GB original, 2.5 GB voided
    corrections = page.inner_text("[data-table=corrections] tbody")
    assert "void" in corrections and "test traffic from our QA" in corrections
    assert "\u22122.50 GB" in corrections
    pages.check("customer-after-void")
    pages.close()


def test_customer_sees_own_usage_and_rotates_a_key(server: tuple[str, World], browser: Any,
                                                   tmp_path: Path) -> None:
    base, world = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    pages = Pages(browser, base, shots, "alice")
    page = pages.wide
    page.goto(f"{base}/usage/account?month={MONTH}")
    assert "3.50 GB" in page.inner_text(".tiles")
    assert "Globex" not in page.content()
    pages.check("account")

    old_key = world.keys["Acme"]
    api = httpx.Client(base_url=base, timeout=10)
    assert api.post("/v1/get-user", headers={"X-API-Key": old_key}).status_code == 200
    page.goto(f"{base}/usage/account/keys")
    pages.check("keys")
    page.locator(f"#key-{old_key[3:11]} button:text-is('Rotate')").click()
    new_key = page.inner_text("#new-key-value").strip()
    assert new_key.startswith("fs_") and new_key != old_key
    assert api.post("/v1/get-user", headers={"X-API-Key": old_key}).status_code == 401
    assert api.post("/v1/get-user", headers={"X-API-Key": new_key}).status_code == 200
    pages.check("keys-after-rotate", "/usage/account/keys")
    pages.check("password", "/usage/account/password")
    api.close()
    pages.close()


def test_login_page_layout(server: tuple[str, World], browser: Any, tmp_path: Path) -> None:
    base, _ = server
    for width in WIDTHS:
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.goto(base + "/usage")
        page.fill("#username", "alice")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        assert "Incorrect username or password." in page.inner_text(".banner.bad")
        assert page.evaluate(OVERFLOW)["sideways"] <= 0
        page.screenshot(path=str(tmp_path / f"login-{width}.png"), full_page=True)
        page.close()
