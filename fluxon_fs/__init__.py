"""Fluxon FS: in-process remote mounts, fs master, fs agent, content cache and directory transfers."""
