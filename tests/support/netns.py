"""A test network of real network stacks: Linux network namespaces joined by a bridge.

:class:`NetnsLab` builds one namespace per "host" and one more holding a bridge (the switch), and
joins each host to the switch with a veth pair::

    host ns  <name>a: lo + eth0 198.18.0.1/24 ──veth── pa ┐
    host ns  <name>b: lo + eth0 198.18.0.2/24 ──veth── pb ├─ br0 in switch ns <name>sw
    host ns  <name>c: lo + eth0 198.18.0.3/24 ──veth── pc ┘

Every address lives inside a namespace (198.18.0.0/15 is reserved for benchmarking networks, RFC
2544); nothing is added to the root namespace, and there is no default route out. Each host has
its own loopback, so a role that advertises 127.0.0.1 is unreachable from the others exactly as
on separate machines. Processes run inside a host with ``ip netns exec`` (:attr:`Host.launcher`,
which the role runtime's ``launcher=`` option takes).

Namespace names carry the creating process's pid and a lab number (``fxt<pid>n<k>…``). :meth:`NetnsLab.destroy` kills
the processes still inside the lab's namespaces and deletes them (deleting a namespace deletes its
veth ends, and so the pairs); it runs at the end of the ``with`` block and at interpreter exit, and
a lab left by a test process that died is deleted by the next one (:func:`remove_stale_labs`).

Where namespaces cannot be created (not Linux, not root, no ``ip``, a sandbox that forbids them)
:func:`netns_unavailable_reason` says exactly why, for ``pytest.skip``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import attrs

SUBNET_PREFIX = "198.18.0"
PREFIX_LENGTH = 24
NAME_PREFIX = "fxt"
_STALE = re.compile(rf"^{NAME_PREFIX}(\d+)n\d+[a-z]+$")
_lab_numbers = itertools.count(1)
_IP_TIMEOUT_S = 20


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip <args>``; NetnsError with its stderr when it fails (and ``check``)."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def netns_unavailable_reason() -> str | None:
    """Why this machine cannot host a lab (None when it can): checked by creating and deleting one namespace."""
    if os.uname().sysname != "Linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (ip netns add); this test runs as uid " + str(os.geteuid())
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"{NAME_PREFIX}{os.getpid()}n0probe"
    try:
        ip("netns", "add", probe)
        ip("netns", "exec", probe, "ip", "link", "set", "lo", "up")
        ip("link", "add", "name", "eth0", "netns", probe, "type", "veth", "peer", "name", "eth1", "netns", probe)
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces and veth pairs here: {exc}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    done = ip("netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _kill_inside(namespace: str) -> None:
    """SIGKILL the processes inside ``namespace`` (a lab's: only its own test started them)."""
    for pid in ip("netns", "pids", namespace, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def remove_stale_labs() -> list[str]:
    """Delete the namespaces (and what still runs in them) of labs whose creating process is gone."""
    removed = []
    for name in _namespaces():
        match = _STALE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_inside(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


@attrs.frozen
class Host:
    """One simulated machine: a network namespace with one address on the lab network."""

    name: str
    netns: str
    address: str
    switch_port: str
    """The switch-side end of the host's veth pair (in the switch namespace)."""

    @property
    def launcher(self) -> list[str]:
        """Command prefix that runs a command inside this host."""
        return ["ip", "netns", "exec", self.netns]

    def run(self, command: Sequence[str], *, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the host and wait for it."""
        return subprocess.run(
            [*self.launcher, *command], capture_output=True, text=True, timeout=timeout_s, check=False
        )

    def pids(self) -> list[int]:
        """Processes running inside this host's namespace."""
        return [int(pid) for pid in ip("netns", "pids", self.netns, check=False).stdout.split()]


class NetnsLab:
    """Hosts named ``names`` (``a`` is 198.18.0.1, ``b`` .2, …) on one bridge; a context manager."""

    def __init__(self, names: Sequence[str] = ("a", "b", "c")) -> None:
        tag = f"{NAME_PREFIX}{os.getpid()}n{next(_lab_numbers)}"
        self.switch = f"{tag}sw"
        self.hosts = {
            name: Host(name, f"{tag}{name}", f"{SUBNET_PREFIX}.{index + 1}", f"p{name}")
            for index, name in enumerate(names)
        }
        self._created: list[str] = []
        self._destroyed = False

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def create(self) -> NetnsLab:
        """Build the namespaces, the bridge and the links; on failure everything built is removed."""
        remove_stale_labs()
        atexit.register(self.destroy)
        try:
            self._add_namespace(self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            for host in self.hosts.values():
                self._add_namespace(host.netns)
                ip("link", "add", "name", "eth0", "netns", host.netns, "type", "veth",
                   "peer", "name", host.switch_port, "netns", self.switch)  # fmt: skip
                ip("-n", self.switch, "link", "set", host.switch_port, "master", "br0")
                ip("-n", self.switch, "link", "set", host.switch_port, "up")
                ip("-n", host.netns, "addr", "add", f"{host.address}/{PREFIX_LENGTH}", "dev", "eth0")
                ip("-n", host.netns, "link", "set", "eth0", "up")
            self._wait_reachable()
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._created.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _wait_reachable(self, timeout_s: float = 10.0) -> None:
        """The first host reaches every other one (a refused TCP connection proves the path works)."""
        first, *others = self.hosts.values()
        probe = (
            "import socket, sys\n"
            "for address in sys.argv[1:]:\n"
            "    try:\n"
            "        socket.create_connection((address, 9), timeout=1).close()\n"
            "    except ConnectionRefusedError:\n"
            "        pass\n"
        )
        deadline = time.monotonic() + timeout_s
        command = [sys.executable, "-c", probe, *(other.address for other in others)]
        while (done := first.run(command, timeout_s=10)).returncode != 0:
            if time.monotonic() > deadline:
                raise NetnsError(f"host {first.name} cannot reach the others after {timeout_s}s: {done.stderr}")
            time.sleep(0.1)

    def set_link(self, name: str, up: bool) -> None:
        """Take host ``name``'s link down (as if its cable were pulled at the switch) or up again."""
        ip("-n", self.switch, "link", "set", self.hosts[name].switch_port, "up" if up else "down")

    def destroy(self) -> None:
        """Kill what still runs inside the lab's namespaces and delete them; idempotent."""
        if self._destroyed:
            return
        self._destroyed = True
        atexit.unregister(self.destroy)
        for name in reversed(self._created):
            _kill_inside(name)
        for name in reversed(self._created):
            ip("netns", "del", name, check=False)
        self._created.clear()

    def __enter__(self) -> NetnsLab:
        return self.create()

    def __exit__(self, *_exc: object) -> None:
        self.destroy()
