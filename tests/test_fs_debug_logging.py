"""What ``FLUXON_LOG=DEBUG`` shows of a mount, as docs/fs.md (Logging) says: one line per closed file,
for reads and writes; metadata operations log nothing in the client."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from tests.support.mount_harness import mounted_export, read_bytes

READ_LINE = re.compile(
    r"^op=read_remote path=(\S+) export=demo size=(\d+) bytes_read=(\d+) cached_pieces=(\d+) "
    r"remote_pieces=(\d+) ms=[\d.]+$"
)
WRITE_LINE = re.compile(r"^op=write_remote path=(\S+) export=demo bytes=(\d+) size=(\d+)$")


def client_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and r.name.startswith("fluxon.fs")]


def test_debug_logs_one_line_per_closed_file_and_none_for_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fluxon")
    with mounted_export(tmp_path) as m:
        m.real("data.bin").write_bytes(b"x" * 3000)

        caplog.clear()
        os.listdir(m.path())
        os.stat(m.path("data.bin"))
        os.mkdir(m.path("sub"))
        os.rename(m.path("sub"), m.path("sub2"))
        os.rmdir(m.path("sub2"))
        assert client_lines(caplog) == []

        caplog.clear()
        assert read_bytes(m.path("data.bin")) == b"x" * 3000
        (line,) = client_lines(caplog)
        path, size, bytes_read, cached, remote = READ_LINE.match(line).groups()  # type: ignore[union-attr]
        assert (path, size, bytes_read) == (m.path("data.bin"), "3000", "3000")
        assert int(cached) + int(remote) == 1

        caplog.clear()
        with open(m.path("new.txt"), "w") as f:
            f.write("hello")
        (line,) = client_lines(caplog)
        assert WRITE_LINE.match(line).groups() == (m.path("new.txt"), "5", "5")  # type: ignore[union-attr]

        caplog.clear()
        os.unlink(m.path("new.txt"))
        assert client_lines(caplog) == []
