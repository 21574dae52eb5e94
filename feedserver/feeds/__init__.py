"""Feeds: snapshots, diffs, hourly batches and the realtime stream."""
