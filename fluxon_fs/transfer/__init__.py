"""Directory transfer jobs and pre-scans, durable in a ``transfer_state_store``."""
