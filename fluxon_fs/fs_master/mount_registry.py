"""Mounts that clients report, shown in the panel; entries expire unless refreshed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs


@attrs.frozen
class MountRecord:
    """One mount in one client process."""

    client_instance_key: str
    local_mount_dir_abs: str
    export_name: str
    username: str
    host: str
    pid: int
    last_seen_wall: float
    expires_at: float


class MountRegistry:
    """Client mounts keyed by (client, mount dir); a client refreshes its entries while it lives."""

    def __init__(self, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._mounts: dict[tuple[str, str], MountRecord] = {}
        self._lock = threading.Lock()

    def report(
        self,
        client_instance_key: str,
        local_mount_dir_abs: str,
        export_name: str,
        username: str = "",
        host: str = "",
        pid: int = 0,
    ) -> None:
        """Record or refresh a mount."""
        record = MountRecord(
            client_instance_key=client_instance_key,
            local_mount_dir_abs=local_mount_dir_abs,
            export_name=export_name,
            username=username,
            host=host,
            pid=pid,
            last_seen_wall=time.time(),
            expires_at=self._clock() + self._ttl_s,
        )
        with self._lock:
            self._mounts[(client_instance_key, local_mount_dir_abs)] = record

    def remove(self, client_instance_key: str, local_mount_dir_abs: str) -> bool:
        """Forget a mount (unmount); True when it was known."""
        with self._lock:
            return self._mounts.pop((client_instance_key, local_mount_dir_abs), None) is not None

    def mounts(self) -> list[MountRecord]:
        """Live mounts sorted by client and path."""
        now = self._clock()
        with self._lock:
            for key in [k for k, r in self._mounts.items() if r.expires_at <= now]:
                del self._mounts[key]
            return sorted(self._mounts.values(), key=lambda r: (r.client_instance_key, r.local_mount_dir_abs))
