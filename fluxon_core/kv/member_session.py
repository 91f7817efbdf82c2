"""A member's registration with the kv master and the keep-alive loop that holds its lease.

Owners talk to the master directly, external clients through their owner's proxy paths; either
way the session gets a ``call_master(path, meta)`` function. When the master no longer knows the
member the session registers again: after a lapsed lease (same master) it first calls
``on_forgotten`` (the master already dropped the member's replicas), after a master restart it
calls ``on_master_restarted`` once registered (so the member can announce what it holds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fluxon_core.errors import ApiError
from fluxon_core.kv.protocol import MasterPath, MemberInfo
from fluxon_core.log_setup import get_logger
from fluxon_core.rpc_types import RpcMessage

log = get_logger("fluxon.kv.member")


class CallMaster(Protocol):
    """Calls a master path (directly or through the owner); ``timeout_s`` None means the default deadline."""

    def __call__(self, path: str, meta: Mapping[str, Any], timeout_s: float | None = None) -> RpcMessage: ...


class MemberSession:
    """Registration and lease keep-alive of one member."""

    def __init__(
        self,
        info: MemberInfo,
        call_master: CallMaster,
        *,
        stats: Callable[[], dict[str, int]] | None = None,
        on_forgotten: Callable[[], None] | None = None,
        on_master_restarted: Callable[[], None] | None = None,
    ) -> None:
        self.info = info
        self._call_master = call_master
        self._stats = stats
        self._on_forgotten = on_forgotten
        self._on_master_restarted = on_master_restarted
        self.lease_ttl_s = 10.0
        self.master_generation = 0
        self.master_instance_key = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._round_lock = threading.RLock()
        self._failing_since: str | None = None

    def register(self, timeout_s: float | None = None) -> None:
        """Register (or register again); raises the master's typed error."""
        answer = self._call_master(MasterPath.REGISTER, {"member": self.info.to_meta()}, timeout_s).meta
        self.lease_ttl_s = int(answer["lease_ttl_ms"]) / 1000
        self.master_generation = int(answer["master_generation"])
        self.master_instance_key = str(answer.get("master_instance_key", ""))

    def start(self) -> None:
        """Start the keep-alive thread (every third of the lease TTL)."""
        self._thread = threading.Thread(
            target=self._loop, name=f"fluxon-kv-keepalive[{self.info.instance_key}]", daemon=True
        )
        self._thread.start()

    def keepalive_once(self) -> None:
        """One keep-alive round; registers again when the master forgot this member."""
        meta: dict[str, Any] = {"instance_key": self.info.instance_key, "generation": self.info.generation}
        if self._stats is not None:
            meta["stats"] = self._stats()
        answer = self._call_master(MasterPath.KEEPALIVE, meta).meta
        if answer.get("known"):
            return
        restarted = int(answer.get("master_generation", 0)) != self.master_generation
        log.warning(
            "kv master %s no longer knows member %s (%s); registering again",
            self.master_instance_key or "?",
            self.info.instance_key,
            "master restarted" if restarted else "lease lapsed",
        )
        if not restarted and self._on_forgotten is not None:
            self._on_forgotten()
        self.register()
        if restarted and self._on_master_restarted is not None:
            self._on_master_restarted()

    def ensure_registered(self) -> None:
        """Run a keep-alive round now (registering again if needed), serialised with the background one."""
        with self._round_lock:
            self.keepalive_once()

    def _loop(self) -> None:
        while not self._stop.wait(max(self.lease_ttl_s / 3, 0.05)):
            try:
                with self._round_lock:
                    self.keepalive_once()
                if self._failing_since is not None:
                    log.info("member %s reaches the kv master again", self.info.instance_key)
                    self._failing_since = None
            except ApiError as exc:
                if self._failing_since is None:
                    log.warning("member %s cannot keep its lease alive: %s", self.info.instance_key, exc)
                    self._failing_since = str(exc)
            except Exception:
                log.exception("keep-alive of member %s failed", self.info.instance_key)

    def stop(self, *, leave: bool = True) -> None:
        """Stop the keep-alive thread and (by default) leave the cluster cleanly; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        if leave:
            try:
                self._call_master(
                    MasterPath.LEAVE,
                    {"instance_key": self.info.instance_key, "generation": self.info.generation},
                    min(2.0, max(self.lease_ttl_s, 0.5)),
                )
            except ApiError as exc:
                log.info("member %s could not leave cleanly: %s", self.info.instance_key, exc)
