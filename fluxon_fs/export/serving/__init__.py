"""The fs agent's export side: confined local operations, write sessions and their RPC service."""
