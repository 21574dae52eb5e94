"""Adapters for external systems: blob store, database, event log."""
