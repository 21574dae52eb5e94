"""The first README command, as a user runs it: `feedserver demo` (what `make run` runs), on a
free port in a temporary data directory, twice in a row (the second run is the next day's).

Every request it prints is made with curl exactly as printed, and the answers are checked for
content, not only status: the snapshot is listed, its download decompresses to the printed
article count, on-demand finds the printed title, the realtime example yields events, and the
pages it names answer. This is the test whose absence let `make run` crash unnoticed.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from urllib.parse import unquote

import httpx

from feedserver.cli.demo import ARTICLES, DEFAULT_TITLE, example_requests
from tests.conftest import ROOT, free_port
from tests.e2e.readme import (
    printed_commands,
    printed_urls,
    readme_commands,
    run_printed,
    started,
    user_env,
    wait_ready,
)

DEMO = [sys.executable, "-m", "feedserver", "demo"]


def _env(data: Path) -> dict[str, str]:
    return user_env(FEEDSERVER_DATA_DIR=str(data), FEEDSERVER_LOG_FORMAT="text")


def _article_count(output: str) -> int:
    found = re.search(rf"{ARTICLES} \((\d+) articles?\)", output)
    assert found, output
    return int(found.group(1))


def check_printed_examples(output: str, base: str, workdir: Path) -> str:
    """Run every printed request and check what it answered; returns the API key used."""
    commands = printed_commands(output)
    assert len(commands) == 6, commands
    ran = {r.command: r for r in run_printed(commands, workdir)}
    listing, download, ondemand, structured, realtime = ran.values()

    assert listing.returncode == 0
    assert ARTICLES in {s["identifier"] for s in json.loads(listing.stdout)}

    assert download.returncode == 0
    # WME's tar.gz, the default download: one NDJSON entry per chunk.
    with tarfile.open(workdir / "demo.tar.gz", mode="r:gz") as tar:
        lines = [line for member in tar.getmembers()
                 for line in tar.extractfile(member).read().splitlines()]  # type: ignore[union-attr]
    assert len(lines) == _article_count(output)
    assert all(json.loads(line)["is_part_of"]["identifier"] == "demowiki" for line in lines)

    assert ondemand.returncode == 0
    title = re.search(r"/v2/articles/(\S+)$", ondemand.command)
    assert title
    found = json.loads(ondemand.stdout)
    assert [a["name"] for a in found] == [unquote(title.group(1))]

    # The same article as Structured Contents: the demo's enterprise plan has the feed.
    assert structured.returncode == 0
    (parsed,) = json.loads(structured.stdout)
    assert parsed["name"] == unquote(title.group(1))
    assert parsed["sections"][0]["name"] == "Abstract" and "article_body" not in parsed

    assert realtime.returncode == 28  # curl's "time limit reached": the stream stays open
    events = [json.loads(line) for line in realtime.stdout.splitlines() if line.strip()]
    assert len(events) >= 40  # the demo's replayed edit history
    assert {e["event"]["type"] for e in events} >= {"update", "delete"}

    key = subprocess.run(["bash", "-c", f"{commands[0]}\necho $KEY"], capture_output=True,
                         text=True, check=True, cwd=workdir).stdout.strip()
    # And every request the README shows against the demo answers (curl --fail: no 4xx/5xx).
    shown = readme_commands((ROOT / "README.md").read_text("utf-8"), base)
    assert len(shown) >= 5, shown
    for r in run_printed([commands[0], *shown], workdir, fail=True):
        assert r.returncode in ((28,) if " -N " in r.command else (0,)), r.command
    for url in printed_urls(output):
        answer = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                           follow_redirects=True)
        assert answer.status_code == 200, (url, answer.text[:300])
    # And what the user pays for reached the ledger: the requests above are in the customer's
    # usage report (the writer commits within a fraction of a second; a bounded wait). A
    # journal that never reaches the ledger serves every request and bills none of them.
    deadline = time.monotonic() + 60
    while True:  # bounded by the deadline
        report = httpx.get(f"{base}/v1/usage", headers={"Authorization": f"Bearer {key}"},
                           timeout=30).json()
        totals = report["customers"][0]["totals"] if report["customers"] else {}
        if totals.get("requests", 0) >= len(shown) and totals.get("bytes", 0) > 0:
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    return key


def test_demo_serves_every_printed_example_twice(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keys = []
    for day in (1, 2):
        with started([*DEMO, "--port", str(port)], cwd=tmp_path,
                     env=_env(tmp_path / "var")) as running:
            wait_ready(base, running)
            keys.append(check_printed_examples(running.output, base, tmp_path))
            # The first run says the credentials are new; the second reuses them.
            assert ("(new)" in running.output) == (day == 1), running.output
    assert keys[0] == keys[1]
    assert running.proc.returncode in (0, -signal.SIGINT), running.output  # Ctrl-C is clean


def test_port_in_use_is_one_line_before_anything_is_built(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([*DEMO, "--port", str(port)], cwd=tmp_path, text=True,
                              env={**_env(tmp_path / "var")},
                              capture_output=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"feedserver: error: port {port} on 127.0.0.1 is already "
                                  "in use"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "var").exists()


def test_a_run_killed_half_way_is_completed_by_the_next(tmp_path: Path) -> None:
    # Killed (kill -9) while building, then run again: the second run must serve everything.
    data = tmp_path / "var"
    proc = subprocess.Popen([*DEMO, "--no-serve"], cwd=tmp_path, env={
        **_env(data)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # bounded: the process ends, or we kill it at the first line
        if "generated demo dump" in line:
            break
    proc.kill()
    proc.wait(timeout=30)
    (data / "demo" / "credentials.txt").unlink(missing_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started([*DEMO, "--port", str(port)], cwd=tmp_path, env=_env(data)) as running:
        wait_ready(base, running)
        check_printed_examples(running.output, base, tmp_path)


def test_damaged_demo_data_is_one_line_naming_the_cure(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    (data / "feedserver.db").write_bytes(b"not a database, a leftover" * 100)
    proc = subprocess.run([*DEMO, "--no-serve"], cwd=tmp_path, env={
        **_env(data)}, capture_output=True, text=True, timeout=120,
        check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert err[-1].startswith("feedserver: error: the demo data in"), proc.stderr
    assert "make clean" in err[-1] and "Traceback" not in proc.stderr


def test_readme_quick_start_is_what_make_run_prints() -> None:
    # A newcomer copies the README's requests: they must be exactly the ones the demo prints.
    readme = (ROOT / "README.md").read_text("utf-8")
    for line in example_requests("http://127.0.0.1:8080", DEFAULT_TITLE,
                                 Path("var/demo/credentials.txt")):
        assert line in readme, line
