"""Helpers that benchmarks start and stop (a private sshd, the Fluxon FS stack) and the mount what-if diagnostics."""
