"""A ``tikv_client.TransactionClient`` driven from synchronous code, with its failures as Fluxon errors.

``tikv_client`` (the Python binding of TiKV's Rust client) only offers coroutines, and its blocking
wrappers use the calling thread's event loop, which worker threads do not have. A
:class:`TikvSession` therefore owns one event loop on a private daemon thread; :meth:`TikvSession.run`
submits a coroutine there and waits for it, so any number of threads can share one session. The
client connects lazily (first call) and again after a failed connect, so a store can be built
while the cluster is down.

Every error the binding raises is a bare ``Exception`` carrying the Rust error's text; it is
classified here by that text (:func:`classify`). A write conflict, a lock that outlived the
client's backoff and an unreachable PD/TiKV mean the transaction did not commit, so the operation
is run again until the call's deadline (``timeout_s``); an unreachable cluster is then reported as
:class:`~fluxon_core.errors.NetworkError`, persistent conflicts as
:class:`~fluxon_core.errors.ApiTimeoutError`. A commit whose outcome the client could not learn
("undetermined") is a :class:`~fluxon_core.errors.NetworkError` at once, never retried, and anything
else is an :class:`~fluxon_core.errors.ApiError` quoting the client.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

import attrs

from fluxon_core.errors import ApiError, ApiTimeoutError, NetworkError, StoreClosedError

T = TypeVar("T")

# How long close() waits for in-flight calls to finish their rollbacks.
_CLOSE_GRACE_S = 2.0
# Retries after conflicts and connection failures back off exponentially up to this delay.
_MAX_RETRY_DELAY_S = 0.25


class TransactionRetry(Exception):
    """The transaction certainly did not commit (write conflict, lock left by a dead writer): run it again."""


# Texts of client-rust errors, matched against the binding's exception messages.
_RETRY = re.compile(
    r"conflict: Some\("  # kvrpcpb.KeyError.conflict: a write committed after our start_ts
    r"|WriteConflict"
    r'|retryable: "[^"]'  # e.g. TxnLockNotFound: a reader rolled our locks back after their TTL
    r"|Failed to resolve lock"  # another live transaction's locks outlasted the client's backoff
)
_UNDETERMINED = re.compile(r"undetermined", re.IGNORECASE)
_NETWORK = re.compile(
    r"PD cluster failed to respond|failed to connect|gRPC error|transport error|Connection refused"
    r"|Unavailable|broken pipe|channel closed|TSO stream terminated|TimestampRequest channel is closed",
    re.IGNORECASE,
)


@attrs.frozen
class Classified:
    """What a ``tikv_client`` failure means: the error to report and whether running the operation again is safe."""

    error: Exception
    retry: bool


def commit_outcome_unknown(error: BaseException) -> bool:
    """True when ``tikv_client`` could not learn whether a commit took effect."""
    return bool(_UNDETERMINED.search(str(error)))


def classify(error: BaseException, action: str) -> Classified:
    """Interpret ``error`` raised by ``tikv_client`` during ``action`` (see the module docstring)."""
    text = str(error)
    if commit_outcome_unknown(error):
        return Classified(
            NetworkError(f"TiKV {action}: the commit's outcome is unknown (the connection failed mid-commit): {text}"),
            retry=False,
        )
    if _RETRY.search(text):
        return Classified(TransactionRetry(text), retry=True)
    if _NETWORK.search(text):
        return Classified(NetworkError(f"TiKV {action}: cluster unreachable: {text}"), retry=True)
    return Classified(ApiError(f"TiKV {action} failed: {text}"), retry=False)


class TikvSession:
    """One lazily connected transactional client on a private event-loop thread."""

    def __init__(self, pd_endpoints: Sequence[str], timeout_s: float) -> None:
        self.pd_endpoints = list(pd_endpoints)
        self.timeout_s = float(timeout_s)
        self._pid = os.getpid()
        self._client: Any = None
        self._connect_lock: asyncio.Lock | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fluxon-tikv-session", daemon=True)
        self._thread.start()

    def _describe(self) -> str:
        return f"TiKV state store (PD {', '.join(self.pd_endpoints)})"

    def check_open(self) -> None:
        """Raise :class:`StoreClosedError` after :meth:`close` (or in a forked child)."""
        if self._closed:
            raise StoreClosedError(f"{self._describe()} is closed")
        if os.getpid() != self._pid:
            raise StoreClosedError(f"{self._describe()} was opened in process {self._pid}; open a new one after fork")

    async def client(self) -> Any:
        """The connected ``TransactionClient`` (connecting first if needed); call on the session loop."""
        if self._client is not None:
            return self._client
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._client is None:
                from tikv_client.asynchronous import TransactionClient

                self._client = await TransactionClient.connect(self.pd_endpoints)
        return self._client

    def run(self, action: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation()`` on the session loop within ``timeout_s``; failures become Fluxon errors.

        ``operation`` runs again after failures that prove it did not take effect (:func:`classify`),
        until the deadline; it must therefore be safe to repeat from the start.
        """
        with self._close_lock:  # close() must see every submitted call, to cancel it
            self.check_open()
            future = asyncio.run_coroutine_threadsafe(self._run_until_deadline(action, operation), self._loop)
        try:
            # The coroutine enforces the deadline itself; the margin covers its final rollback.
            return future.result(self.timeout_s + _CLOSE_GRACE_S + 1.0)
        except (FutureCancelledError, asyncio.CancelledError):
            raise StoreClosedError(f"{self._describe()} was closed during {action}") from None
        except FutureTimeoutError:
            future.cancel()
            raise ApiTimeoutError(f"{self._describe()}: {action} did not finish within {self.timeout_s} s") from None

    async def _run_until_deadline(self, action: str, operation: Callable[[], Awaitable[T]]) -> T:
        delay_s = 0.002
        last_problem: Exception | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    try:
                        return await operation()
                    except ApiError:
                        raise
                    except Exception as error:
                        outcome = classify(error, action)
                        if not outcome.retry:
                            raise outcome.error from error
                        last_problem = outcome.error
                    # A conflict or an unreachable cluster (PD leader change, restart): try again soon.
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, _MAX_RETRY_DELAY_S)
        except TimeoutError:
            if isinstance(last_problem, NetworkError):
                raise NetworkError(f"{last_problem.message} (still failing after {self.timeout_s} s)") from None
            detail = f" (last conflict: {last_problem})" if last_problem else " (no answer from the cluster)"
            raise ApiTimeoutError(
                f"{self._describe()}: {action} did not finish within {self.timeout_s} s{detail}"
            ) from None

    def close(self) -> None:
        """Cancel in-flight calls, drop the client (its connections close) and stop the loop; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() != self._pid:
            return  # the loop thread belongs to the parent process
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(_CLOSE_GRACE_S + 1.0)
            except (FutureTimeoutError, FutureCancelledError):
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(_CLOSE_GRACE_S)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_CLOSE_GRACE_S)
        self._client = None
