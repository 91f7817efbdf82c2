"""The fs master's RPC protocol as every other role and client sees it."""
