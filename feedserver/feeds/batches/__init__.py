"""Hourly batches of the article topic: ``hours`` (which hour, when complete), ``files``
(pure contents), ``build`` (from the event log), ``store`` (publish, read, expire)."""
