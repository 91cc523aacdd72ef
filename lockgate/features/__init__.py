"""Feature data: the data-quality suite a snapshot must pass (Great Expectations)."""
