"""Local cache rules: local files under ``dir_abs`` read through and write through the KV cache.

A file ``dir_abs/rel`` is published as the KV value ``kv_key_prefix + rel`` with the field
``bytes_field_key`` holding its bytes plus its ``size`` and ``mtime_ns``. A read under the rule is
served from KV when the cached version matches the file's current size and mtime, otherwise from
disk (and then cached). A file opened for writing is published when it is *closed* (never on flush);
``os.open``/``os.close`` descriptors opened for writing are published at ``os.close`` too.
``write_back`` publishes in the background instead of inside ``close()``.
"""

from __future__ import annotations

import _io
import io
import os
import stat as stat_module
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from fluxon_core.errors import KeyNotFoundError
from fluxon_core.kv import KvClient
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import CACHE_HITS, CACHE_MISSES
from fluxon_fs.config import CacheMode, CacheRuleConfig, RefreshErrorPolicy, WriteMode

log = get_logger("fluxon.fs.cache_rules")

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


@attrs.frozen
class _Cached:
    data: Any
    size: int
    mtime_ns: int
    fetched_at: float


class CacheRuleSet:
    """The cache rules of one process, bound to its KV client."""

    def __init__(self, store: KvClient, rules: Sequence[CacheRuleConfig], stale_window_ms: int) -> None:
        self._store = store
        self._rules = sorted(rules, key=lambda r: len(r.dir_abs), reverse=True)
        self.dirs = tuple(os.path.normpath(r.dir_abs) + "/" for r in self._rules)
        self._stale_window_s = stale_window_ms / 1000
        self._last_good: dict[str, _Cached] = {}
        self._write_fds: dict[int, str] = {}
        self._lock = threading.Lock()
        self._hits = CACHE_HITS.get().labels("fs")
        self._misses = CACHE_MISSES.get().labels("fs")

    def rule_for(self, path: Any) -> tuple[CacheRuleConfig, str, str] | None:
        """``(rule, absolute path, key)`` when ``path`` is a file under a rule.

        An absolute, already normal path costs a few ``startswith`` calls; anything else is
        normalised first.
        """
        text = path if type(path) is str else (os.fsdecode(path) if isinstance(path, bytes | os.PathLike) else None)
        if not text:
            return None
        if not (text[0] == "/" and "/." not in text and "//" not in text):
            text = os.path.normpath(text if text[0] == "/" else os.path.join(os.getcwd(), text))
        for rule, prefix in zip(self._rules, self.dirs, strict=True):
            if text.startswith(prefix):
                return rule, text, rule.kv_key_prefix + text[len(prefix) :]
        return None

    # ----- reads ----------------------------------------------------------------------------------

    def open_local(self, file: Any, mode: str, text_args: dict[str, Any], real_open: Callable[..., Any]) -> Any:
        """The patched ``open`` on a local path: served through a rule, or None to open normally."""
        found = self.rule_for(file)
        if found is None:
            return None
        rule, path, key = found
        if any(flag in mode for flag in "wax+"):
            handle = real_open(
                file, mode, text_args["buffering"], text_args["encoding"], text_args["errors"], text_args["newline"]
            )
            return self.wrap_writer(handle, rule, path, key)
        return self.open_for_read(rule, path, key, mode, text_args)

    def opened_fd(self, fd: int, path: Any, flags: int) -> None:
        """``os.open`` of a path under a rule for writing: publish the file when the fd is closed."""
        if flags & WRITE_FLAGS and self.rule_for(path) is not None:
            self.track_fd(fd, os.fsdecode(path))

    def open_for_read(
        self, rule: CacheRuleConfig, path: str, key: str, mode: str, text_args: dict[str, Any]
    ) -> Any | None:
        """A file object serving ``path`` from KV (or from disk, then cached); None to use the plain open."""
        if rule.cache_mode is CacheMode.DISABLED:
            return None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None  # the plain open reports it
        except OSError:
            if rule.on_refresh_error is RefreshErrorPolicy.APPLY_STALE_WINDOW:
                cached = self._last_good.get(key)
                if cached is not None and time.monotonic() - cached.fetched_at < self._stale_window_s:
                    return _as_file(cached.data, mode, text_args)
            return None
        if not stat_module.S_ISREG(st.st_mode) or st.st_size > rule.max_cache_bytes:
            return None
        data = self._lookup(rule, key, st)
        if data is None:
            self._misses.inc()
            with _io.open(path, "rb") as handle:
                content = handle.read()
            self.publish(rule, key, content, st.st_size, st.st_mtime_ns)
            data = content
        else:
            self._hits.inc()
        self._last_good[key] = _Cached(data, st.st_size, st.st_mtime_ns, time.monotonic())
        return _as_file(data, mode, text_args)

    def _lookup(self, rule: CacheRuleConfig, key: str, st: os.stat_result) -> Any | None:
        result = self._store.get_blocking(key)
        if result.is_err():
            if not isinstance(result.unwrap_error(), KeyNotFoundError):
                log.warning("cache rule lookup of %s failed: %s", key, result.unwrap_error())
            return None
        value = result.unwrap().access()
        if value.get("size") != st.st_size or value.get("mtime_ns") != st.st_mtime_ns:
            return None
        return value.get(rule.bytes_field_key)

    # ----- writes ---------------------------------------------------------------------------------

    def publish(self, rule: CacheRuleConfig, key: str, data: Any, size: int, mtime_ns: int) -> None:
        """Put the file's bytes and version under its key."""
        if size > rule.max_cache_bytes:
            self._store.remove(key)
            return
        result = self._store.put_blocking(key, {rule.bytes_field_key: bytes(data), "size": size, "mtime_ns": mtime_ns})
        if result.is_err():
            log.warning("cache rule publish of %s failed: %s", key, result.unwrap_error())

    def publish_file(self, rule: CacheRuleConfig, path: str, key: str) -> None:
        """Publish the file as it is on disk now (after a writer closed it)."""

        def run() -> None:
            try:
                st = os.stat(path)
                if st.st_size > rule.max_cache_bytes:
                    self._store.remove(key)
                    return
                with _io.open(path, "rb") as handle:
                    content = handle.read()
                self.publish(rule, key, content, st.st_size, st.st_mtime_ns)
            except OSError as exc:
                log.warning("cache rule publish of %s failed: %s", path, exc)

        if rule.write_mode is WriteMode.WRITE_BACK:
            threading.Thread(target=run, name="fluxon-cache-rule-publish", daemon=True).start()
        else:
            run()

    def wrap_writer(self, handle: Any, rule: CacheRuleConfig, path: str, key: str) -> Any:
        """``handle`` whose ``close()`` publishes the file afterwards."""
        return _PublishingFile(handle, lambda: self.publish_file(rule, path, key))

    def track_fd(self, fd: int, path: str) -> None:
        """Remember an ``os.open`` descriptor opened for writing under a rule."""
        with self._lock:
            self._write_fds[fd] = path

    def closed_fd(self, fd: int) -> None:
        """``os.close`` of a tracked descriptor: publish its file."""
        if not self._write_fds:
            return
        with self._lock:
            path = self._write_fds.pop(fd, None)
        if path is not None:
            found = self.rule_for(path)
            if found is not None:
                rule, absolute, key = found
                self.publish_file(rule, absolute, key)


def _as_file(data: Any, mode: str, text_args: dict) -> Any:
    raw = io.BytesIO(bytes(data))
    if "b" in mode:
        return raw
    return io.TextIOWrapper(
        raw,
        encoding=text_args.get("encoding"),
        errors=text_args.get("errors"),
        newline=text_args.get("newline"),
    )


class _PublishingFile:
    """A file object proxy that runs ``on_closed`` after the real close."""

    def __init__(self, handle: Any, on_closed: Callable[[], None]) -> None:
        self._handle = handle
        self._on_closed = on_closed
        self._published = False

    def close(self) -> None:
        self._handle.close()
        if not self._published:
            self._published = True
            self._on_closed()

    def __enter__(self) -> _PublishingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Any:
        return iter(self._handle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __del__(self) -> None:
        try:
            if not self._handle.closed:
                self.close()
        except Exception:
            pass
