"""The one hook between sealing and publishing: files built beside a version's chunks.

After a namespace is sealed, every optional format the settings enable builds its files from
the sealed chunks (never from the dump again) into the build's scratch folder, and hands
``publish`` an ``Extra``: the files to upload under the version's folder (before the
manifest) and the section it adds to the manifest. The WME tar.gz parts are one
(``wme.build_parts``, with ``settings.wme_archives``), Parquet shards another
(``parquet.build_parquet``); another format joins by adding its builder to ``build_extras``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from feedserver.config import Settings
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.feeds.snapshots.parquet import (
    KnownText,
    ParquetOptions,
    TextMapper,
    build_parquet,
)
from feedserver.feeds.snapshots.sealing import SealedSnapshot
from feedserver.feeds.snapshots.wme import PartMapper, build_parts


class Extra(Protocol):
    """What one optional format built for a sealed version."""

    def files(self) -> list[tuple[str, Path]]:
        """(name under the version's folder, local file) of each file to upload."""

    def record(self, manifest: Manifest) -> Manifest:
        """The manifest with this format's section filled in (keys under its version)."""


def parquet_options(settings: Settings) -> ParquetOptions:
    return ParquetOptions(shard_size=settings.parquet_shard_size,
                          row_group_size=settings.parquet_row_group_size)


def build_extras(sealed: SealedSnapshot, *, identifier: str, folder: Path, settings: Settings,
                 namespaces: Mapping[int, str], mapper: TextMapper | None = None,
                 part_mapper: PartMapper | None = None, known: KnownText | None = None
                 ) -> list[Extra]:
    """Build every enabled format of ``sealed`` under ``folder`` (the build's scratch).
    ``namespaces``: the wiki's namespace names (what the clean text recognises); the
    mappers run jobs in other processes (e.g. a pool's ``map``); ``known``: clean texts the
    build computed already (``structured_parquet.StructuredTexts``)."""
    extras: list[Extra] = []
    if settings.wme_archives:
        extras.append(build_parts(sealed, identifier, folder, level=settings.wme_gzip_level,
                                  mapper=part_mapper))
    if settings.parquet_enabled and sealed.chunks:
        extras.append(build_parquet(
            sealed, identifier=identifier, folder=folder / f"parquet_{sealed.namespace}",
            options=parquet_options(settings), namespaces=namespaces, mapper=mapper,
            known=known))
    return extras
