"""Performance harness: ``python -m benchmarks.run --quick`` (see ``docs/performance.md``)."""
