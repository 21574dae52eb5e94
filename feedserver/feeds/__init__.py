"""The feeds, one package each: ``snapshots`` (build, seal, publish, read), ``diffs`` (between
versions, apply, advance), ``events`` (the consumer and the state store), ``realtime`` (the
fan-out hub) and ``batches`` (hourly files). ``scratch`` holds the shared scratch database."""
