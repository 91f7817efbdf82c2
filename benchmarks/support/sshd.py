"""A private OpenSSH server on 127.0.0.1 for SFTP peers in benchmarks.

Runs ``/usr/sbin/sshd -D -e -f <config>`` with its own host key, authorized key and config in a
temporary directory, on a free port; only key authentication for the current user is accepted.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
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


def _banner_seen(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _write_config(workdir: Path, port: int, host_key: Path, authorized: Path) -> Path:
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
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
def local_sshd() -> Iterator[SshEndpoint]:
    """Start a private sshd and yield its endpoint; it is stopped and its files removed afterwards."""
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
        port = _free_port()
        config = _write_config(workdir, port, host_key, authorized)
        with (workdir / "sshd.log").open("wb") as log:
            process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _banner_seen(port):
            if process.poll() is not None or time.monotonic() > deadline:
                detail = (workdir / "sshd.log").read_text(errors="replace")
                raise RuntimeError(f"private sshd on port {port} did not start: {detail.strip()}")
            time.sleep(0.05)
        yield SshEndpoint("127.0.0.1", port, getpass.getuser(), str(client_key))
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        shutil.rmtree(workdir, ignore_errors=True)
