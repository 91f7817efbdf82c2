"""A private OpenSSH server for SFTP and rsync-over-ssh peers in benchmarks.

Runs ``/usr/sbin/sshd -D -e -f <config>`` with its own host key, authorized key and config in a
temporary directory, on a free port of 127.0.0.1 — or, given a ``launcher`` (``ip netns exec <ns>``),
inside a network namespace on the address and port given; only key authentication for the current
user is accepted.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it


@attrs.frozen
class SshEndpoint:
    """How to reach the private sshd."""

    host: str
    port: int
    username: str
    key_filename: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


_BANNER_PROBE = (
    "import socket, sys\n"
    "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5) as conn:\n"
    "    sys.exit(0 if conn.recv(4).startswith(b'SSH-') else 1)\n"
)


def _banner_seen(address: str, port: int, launcher: Sequence[str]) -> bool:
    if launcher:  # the server is in another network namespace: look from inside it
        probe = [*launcher, sys.executable, "-c", _BANNER_PROBE, address, str(port)]
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    try:
        with socket.create_connection((address, port), timeout=0.5) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _write_config(workdir: Path, address: str, port: int, host_key: Path, authorized: Path) -> Path:
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {address}",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {workdir / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return config


@contextlib.contextmanager
def local_sshd(
    address: str = "127.0.0.1", port: int | None = None, launcher: Sequence[str] = ()
) -> Iterator[SshEndpoint]:
    """Start a private sshd and yield its endpoint; it is stopped and its files removed afterwards.

    ``launcher`` runs it inside a network namespace, listening on ``address`` there; ``port`` is then
    required (a free port cannot be probed from here), else a free port of 127.0.0.1 is used.
    """
    if launcher and port is None:
        raise ValueError("an sshd started through a launcher needs an explicit port")
    if not os.path.exists(SSHD):
        raise FileNotFoundError(f"{SSHD} not found: install openssh-server to run the SFTP peer")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fxsshd", dir="/tmp"))
    process: subprocess.Popen[bytes] | None = None
    try:
        host_key, client_key = workdir / "host_key", workdir / "client_key"
        _keygen(host_key)
        _keygen(client_key)
        authorized = workdir / "authorized_keys"
        shutil.copyfile(f"{client_key}.pub", authorized)
        port = port or _free_port()
        config = _write_config(workdir, address, port, host_key, authorized)
        with (workdir / "sshd.log").open("wb") as log:
            process = subprocess.Popen([*launcher, SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _banner_seen(address, port, launcher):
            if process.poll() is not None or time.monotonic() > deadline:
                detail = (workdir / "sshd.log").read_text(errors="replace")
                raise RuntimeError(f"private sshd on port {port} did not start: {detail.strip()}")
            time.sleep(0.05)
        yield SshEndpoint(address, port, getpass.getuser(), str(client_key))
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        shutil.rmtree(workdir, ignore_errors=True)
