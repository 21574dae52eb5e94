"""`feedserver snapshot ...` end to end in a subprocess, on the real dumps."""

from __future__ import annotations

import bz2
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import DUMPS

VOYAGE = DUMPS / "operations-dumps-mwbzutils/sample-pages-articles.xml.bz2"
TESTCORPUS = DUMPS / "gensim-4.4.0/testcorpus.xml.bz2"
NO_SITEINFO = DUMPS / "gensim-4.4.0/enwiki-table-markup.xml.bz2"


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    env["FEEDSERVER_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "feedserver", *args], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )


def test_build_list_show_verify_export(tmp_path: Path, shared_data: Path) -> None:
    var = tmp_path / "var"
    metrics = tmp_path / "build.prom"
    built = run(var, "snapshot", "build", "--dump", str(VOYAGE), "--chunk-size", "200000",
                "--namespace", "0", "--namespace", "10", "--no-progress",
                "--metrics-file", str(metrics))
    assert built.returncode == 0, built.stderr
    assert "elwikivoyage_namespace_0 version 1" in built.stdout
    assert "elwikivoyage_namespace_10 version 1" in built.stdout
    # Namespace 0 (the default structured namespace) got Structured Contents in the same run;
    # the broken pages of this real wiki are counted, the build goes on.
    assert ("elwikivoyage_namespace_0 structured contents version 1: 1310 articles"
            in built.stdout)
    assert "elwikivoyage_namespace_10 structured" not in built.stdout
    prom = metrics.read_text()
    assert 'feedserver_structured_pages_total{result="degraded",source="build"}' in prom
    assert 'feedserver_structured_problems_total{problem="markup_leak",source="build"}' in prom
    assert run(var, "snapshot", "list", "--structured").stdout.split("\t")[0] \
        == "elwikivoyage_namespace_0"
    verified = run(var, "snapshot", "verify", "--structured", "elwikivoyage_namespace_0")
    assert verified.returncode == 0 and "OK (1310 articles" in verified.stdout
    shown = json.loads(run(var, "snapshot", "show", "--structured",
                           "elwikivoyage_namespace_0").stdout)
    assert shown["structured"]["article_version"] == 1 and shown["structured"]["degraded"] > 0
    sc_out = tmp_path / "sc.ndjson"
    assert run(var, "snapshot", "export", "--structured", "elwikivoyage_namespace_0", "-o",
               str(sc_out)).returncode == 0
    first = json.loads(sc_out.read_bytes().splitlines()[0])
    assert first["sections"][0]["name"] == "Abstract" and "article_body" not in first
    assert run(var, "snapshot", "show", "--structured",
               "elwikivoyage_namespace_10").returncode != 0
    listed = run(var, "snapshot", "list")
    assert listed.returncode == 0
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [
        "elwikivoyage_namespace_0", "elwikivoyage_namespace_10"]
    shown = run(var, "snapshot", "show", "elwikivoyage_namespace_0", "--version", "1")
    manifest = json.loads(shown.stdout)
    assert manifest["identifier"] == "elwikivoyage_namespace_0" and len(manifest["chunks"]) > 1
    verified = run(var, "snapshot", "verify", "elwikivoyage_namespace_0")
    assert verified.returncode == 0 and "OK" in verified.stdout
    out = tmp_path / "ns0.ndjson"
    exported = run(var, "snapshot", "export", "elwikivoyage_namespace_0", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == manifest["article_count"]
    assert all(json.loads(line)["namespace"]["identifier"] == 0 for line in lines)


def test_bad_real_dump_one_line_error(tmp_path: Path, shared_data: Path) -> None:
    var = tmp_path / "var"
    built = run(var, "snapshot", "build", "--dump", str(TESTCORPUS), "--no-progress",
                "--no-structured")
    assert built.returncode == 0 and "structured" not in built.stdout
    assert run(var, "snapshot", "list", "--structured").stdout == ""  # --no-structured
    bad = run(var, "snapshot", "build", "--dump", str(NO_SITEINFO), "--no-progress")
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "siteinfo" in bad.stderr and "Traceback" not in bad.stderr
    # The same real dump with one page id past 64 bits: it used to reach SQLite mid-build
    # and end in an OverflowError traceback.
    xml = bz2.decompress(TESTCORPUS.read_bytes())
    forged = tmp_path / "forged.xml"
    forged.write_bytes(re.sub(rb"(</ns>\s*<id>)[0-9]+", rb"\g<1>" + str(2**64).encode(), xml,
                              count=1))
    for workers in ("1", "2"):
        bad = run(var, "snapshot", "build", "--dump", str(forged), "--no-progress",
                  "--workers", workers)
        assert bad.returncode != 0
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert f"page <id> is '{2**64}'" in bad.stderr and "Traceback" not in bad.stderr
    listed = run(var, "snapshot", "list")
    assert listed.stdout.count("version 1") == 1  # the earlier version is still current


def test_hostile_and_missing_identifiers(tmp_path: Path) -> None:
    var = tmp_path / "var"
    for args in (("show", "../../etc/passwd"), ("verify", "enwiki_namespace_0/.."),
                 ("export", "x;rm", "-o", str(tmp_path / "x"))):
        result = run(var, "snapshot", *args)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert "invalid snapshot identifier" in result.stderr
    missing = run(var, "snapshot", "show", "enwiki_namespace_0")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert not (tmp_path / "x").exists()
    nofile = run(var, "snapshot", "build", "--dump", str(tmp_path / "nope.xml"))
    assert nofile.returncode == 1 and "not a file" in nofile.stderr
