"""The audit trail: append-only, hash-chained record of every write."""
