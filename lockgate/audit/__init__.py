"""The audit log: a hash-chained, append-only JSON-lines file with a signed, witnessed head."""
