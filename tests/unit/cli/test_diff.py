"""`feedserver diff build|advance|list|show|apply` in-process, on synthetic snapshots."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from feedserver.cli import main
from feedserver.config import load_settings
from feedserver.feeds.diffs.manifest import ENCODER
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.ingest.events import ArticleChange, to_us
from feedserver.models import ArticleKey, Event, Version
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import connect
from tests.unit.feeds.diffs.test_build_apply import INFO, V1, V2, article

ID = "testwiki_namespace_0"


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in __import__("os").environ if k.startswith("FEEDSERVER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def test_build_show_list_apply(var: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                               ) -> None:
    settings = load_settings(env={}, data_dir=str(var))
    blobs = FilesystemBlobStore(settings.blob_root)
    build_from_records(INFO, V1, blobs, settings)
    assert main(["diff", "build"]) == 0
    assert "only one version" in capsys.readouterr().out
    build_from_records(INFO, V2, blobs, settings)
    assert main(["diff", "build", ID]) == 0
    assert capsys.readouterr().out.startswith(f"built {ID} 1->2: +2 ~2 -2")
    assert main(["diff", "build", ID]) == 0
    assert capsys.readouterr().out.startswith("exists ")
    assert main(["diff", "list"]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert main(["diff", "show", ID]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["base_version"], shown["version"]) == (1, 2)

    m = DiffStore(blobs).manifest(ID)
    v1 = SnapshotStore(blobs).manifest(ID, 1)
    base, diff, man = tmp_path / "v1.zst", tmp_path / "d.zst", tmp_path / "m.json"
    base.write_bytes(b"".join(blobs.get_bytes(c.key) for c in v1.chunks))
    diff.write_bytes(b"".join(blobs.get_bytes(c.key) for c in m.chunks))
    man.write_bytes(ENCODER.encode(m))
    out = tmp_path / "v2.ndjson"
    assert main(["diff", "apply", "--base", str(base), "--diff", str(diff), "--manifest",
                 str(man), "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith("OK:") and out.is_file()
    assert main(["diff", "apply", "--base", str(out), "--diff", str(diff), "--manifest",
                 str(man)]) == 2
    assert "MISMATCH" in capsys.readouterr().out
    assert main(["diff", "apply", "--base", str(base), "--diff", str(tmp_path / "nope"),
                 "--manifest", str(man)]) == 1
    assert "not a file" in capsys.readouterr().err
    assert main(["diff", "apply", "--base", str(base), "--diff", str(diff),
                 "--manifest", str(base)]) == 1
    assert "not a diff manifest" in capsys.readouterr().err


def test_advance(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(env={}, data_dir=str(var))
    blobs = FilesystemBlobStore(settings.blob_root)
    (v1,) = build_from_records(INFO, V1, blobs, settings)
    assert main(["diff", "advance", ID]) == 0
    assert "nothing published" in capsys.readouterr().out
    db = connect(settings.database)
    try:
        when = v1.date_modified + timedelta(seconds=1)
        edited = article(7, rev=8, text="edited by an event")
        edited.event = Event(identifier="e1", type="update")
        StateStore(db).apply(ArticleChange(
            key=ArticleKey("testwiki", 0, 7), article=edited, source_kind="edit", revision=8,
            changed_us=to_us(when)))
    finally:
        db.close()
    metrics = var.parent / "advance.prom"
    assert main(["diff", "advance", ID, "--until", (when + timedelta(seconds=1)).isoformat(),
                 "--metrics-file", str(metrics)]) == 0
    out = capsys.readouterr().out
    assert f"{ID} version 2" in out and "+0 ~1 -0" in out
    # Namespace 0 has Structured Contents by default: advanced too, the edited page parsed.
    assert f"{ID} structured contents version 2:" in out and "1 parsed, 0 degraded" in out
    assert ('feedserver_structured_pages_total{result="ok",source="advance"} 1.0'
            in metrics.read_text())
    v2 = SnapshotStore(blobs).manifest(ID)
    assert v2.version == 2 and v2.events_until == when + timedelta(seconds=1)
    article7 = next(a for a in SnapshotStore(blobs).iter_articles(v2) if a.identifier == 7)
    assert article7.version == Version(identifier=8)
    with pytest.raises(SystemExit):
        main(["diff", "advance", ID, "--until", "yesterday"])
