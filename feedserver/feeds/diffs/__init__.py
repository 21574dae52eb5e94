"""Diffs between two snapshot versions: ``manifest`` (entries, manifest, blob layout),
``build`` (streaming merge), ``apply`` (pure, verified), ``files`` (client-side files),
``advance`` (version N+1 from N plus the state store), ``store`` (reading)."""
