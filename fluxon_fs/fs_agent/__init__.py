"""The fs agent role: serves exports over RPC, registers them with the fs master, runs transfer workers."""
