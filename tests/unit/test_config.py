"""Settings: loading rules, and every field documented in README.md (design convention 2)."""

from __future__ import annotations

import msgspec
import pytest

from feedserver.config import Settings, load_settings
from tests.conftest import ROOT


def test_every_setting_is_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        f.name
        for f in msgspec.structs.fields(Settings)
        if f"`FEEDSERVER_{f.name.upper()}`" not in readme
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_env_values_are_converted() -> None:
    s = load_settings(
        {"FEEDSERVER_PORT": "9000", "FEEDSERVER_EVENT_TOPICS": "a, b",
         "FEEDSERVER_S3_REDIRECT_DOWNLOADS": "true"}
    )
    assert (s.port, s.event_topics, s.s3_redirect_downloads) == (9000, ["a", "b"], True)


def test_mode_switches_every_store() -> None:
    embedded = load_settings({})
    distributed = load_settings({"FEEDSERVER_MODE": "distributed"})
    assert embedded.blob_store_kind == "filesystem"
    assert embedded.database.startswith("sqlite:")
    assert distributed.blob_store_kind == "s3"
    assert distributed.database.startswith("postgresql:")


def test_unknown_and_invalid_settings_fail_clearly() -> None:
    with pytest.raises(ValueError, match="FEEDSERVER_NOPE"):
        load_settings({"FEEDSERVER_NOPE": "1"})
    with pytest.raises(ValueError, match="invalid configuration"):
        load_settings({"FEEDSERVER_PORT": "eighty"})


def test_toml_file_then_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "feedserver.toml"
    cfg.write_text('port = 7000\nchunk_size = 1024\n', encoding="utf-8")
    s = load_settings({"FEEDSERVER_CONFIG": str(cfg), "FEEDSERVER_PORT": "7001"})
    assert (s.port, s.chunk_size) == (7001, 1024)
