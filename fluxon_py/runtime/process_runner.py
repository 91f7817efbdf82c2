"""``fluxon_py.runtime.process_runner``: supervising role subprocesses under the guide's import path."""

from fluxon_core.runtime import ManagedSubprocess, wait_subproc_or_ctrlc

__all__ = ["ManagedSubprocess", "wait_subproc_or_ctrlc"]
