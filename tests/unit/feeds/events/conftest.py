"""What the consumer tests share: the page_change input topic, settings that read it into 3
article partitions, and a fresh SQLite database (the state store and the embedded log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedserver.config import Settings, load_settings
from feedserver.storage.db import SQLiteDatabase

INPUT = "mediawiki.page_change.v1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path), event_topics=[INPUT],
                         article_partitions=3)


@pytest.fixture
def db(tmp_path: Path) -> SQLiteDatabase:
    return SQLiteDatabase(tmp_path / "feedserver.db")
