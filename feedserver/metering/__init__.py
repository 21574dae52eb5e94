"""Usage records, the hash-chained ledger, quotas and reports."""
