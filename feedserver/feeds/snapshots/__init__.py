"""Snapshots: versions of a wiki namespace as zstd NDJSON chunks with a manifest.

``build`` (stage, seal, publish from dumps), ``staging``, ``chunks``, ``sealing``, ``publish``
(atomic, pointer last), ``manifest`` (records and blob layout), ``store`` (reading)."""
