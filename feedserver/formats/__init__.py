"""Pure encoders and writers of the file formats a snapshot version can be served in.

- ``wme_tar``: Wikimedia Enterprise archives (tar.gz of NDJSON), byte-for-byte deterministic,
  built from independent gzip members so a whole-snapshot archive is its chunks' pieces back
  to back (``wme_layout`` maps downloads and byte ranges onto those pieces).
- ``parquet``: Parquet shards of articles and of diffs (pyarrow, zstd inside).
- ``checksums``: size, SHA-256 and MD5 taken while the bytes are written.

Nothing here knows the blob store: writers take local files or binary streams, callers move
the results (see docs/formats.md).
"""
