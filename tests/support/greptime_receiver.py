"""A LOCAL stand-in for GreptimeDB's InfluxDB write endpoint — it checks the payload format, it is not GreptimeDB.

:class:`GreptimeReceiver` is an ``http.server`` in a daemon thread that accepts what the
``greptime`` metrics sink sends and checks it strictly: the request path
(``/v1/influxdb/write``), the query parameters (``db``, ``precision=ms``), HTTP Basic credentials
when the receiver has some, and a line-protocol body parsed by :func:`parse_line_protocol`, which
refuses anything the InfluxDB line protocol does not allow (unescaped separators, empty tag values,
malformed numbers, trailing garbage). Every request is kept in :attr:`GreptimeReceiver.writes` with
its problem, if any. Like GreptimeDB, a good write gets ``204 No Content``; a bad one ``400``, bad
credentials ``401``, an unknown path ``404``. ``fail_next(n)`` makes the next ``n`` writes answer
``500`` to exercise retries.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

WRITE_PATH = "/v1/influxdb/write"


class LineProtocolError(ValueError):
    """The body is not valid line protocol."""


@attrs.frozen
class Point:
    """One parsed line: ``fields`` values are float, int (``i``), int (``u``), bool or str as written."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, Any]
    timestamp: int | None
    raw_fields: dict[str, str]


_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INT = re.compile(r"^[+-]?\d+i$")
_UINT = re.compile(r"^\d+u$")
_BOOLS = {"t": True, "T": True, "true": True, "True": True, "TRUE": True}
_BOOLS |= {"f": False, "F": False, "false": False, "False": False, "FALSE": False}
_TIMESTAMP = re.compile(r"^-?\d+$")


class _Cursor:
    """Reads one line; every read names its position on error."""

    def __init__(self, line: str, number: int) -> None:
        self.line = line
        self.pos = 0
        self.number = number

    def fail(self, problem: str) -> LineProtocolError:
        return LineProtocolError(f"line {self.number}, column {self.pos + 1}: {problem}: {self.line!r}")

    def at_end(self) -> bool:
        return self.pos >= len(self.line)

    def peek(self) -> str:
        return self.line[self.pos] if self.pos < len(self.line) else ""

    def read_escaped(self, stops: str, escapable: str, what: str) -> str:
        """Read up to an unescaped character of ``stops``; a backslash may only escape ``escapable``."""
        out: list[str] = []
        while not self.at_end():
            char = self.line[self.pos]
            if char == "\\":
                following = self.line[self.pos + 1 : self.pos + 2]
                if following == "" or following not in escapable:
                    raise self.fail(f"{what}: backslash must escape one of {escapable!r}")
                out.append(following)
                self.pos += 2
                continue
            if char in stops:
                break
            if char in "\r\n\t":
                raise self.fail(f"{what}: control character {char!r}")
            out.append(char)
            self.pos += 1
        if not out:
            raise self.fail(f"empty {what}")
        return "".join(out)

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def read_field_value(self) -> tuple[Any, str]:
        if self.peek() == '"':
            start = self.pos
            self.pos += 1
            out: list[str] = []
            while True:
                if self.at_end():
                    raise self.fail("unterminated string field")
                char = self.line[self.pos]
                if char == "\\" and self.line[self.pos + 1 : self.pos + 2] in ('"', "\\"):
                    out.append(self.line[self.pos + 1])
                    self.pos += 2
                    continue
                self.pos += 1
                if char == '"':
                    return "".join(out), self.line[start : self.pos]
                out.append(char)
        start = self.pos
        while not self.at_end() and self.peek() not in ", ":
            self.pos += 1
        raw = self.line[start : self.pos]
        if _INT.match(raw):
            return int(raw[:-1]), raw
        if _UINT.match(raw):
            return int(raw[:-1]), raw
        if raw in _BOOLS:
            return _BOOLS[raw], raw
        if _FLOAT.match(raw):
            return float(raw), raw
        raise self.fail(f"field value {raw!r} is not a float, integer, boolean or string")


def parse_line(line: str, number: int = 1) -> Point:
    """Parse one line of line protocol strictly."""
    cursor = _Cursor(line, number)
    measurement = cursor.read_escaped(", ", ", \\", "measurement")
    tags: dict[str, str] = {}
    while cursor.peek() == ",":
        cursor.pos += 1
        key = cursor.read_escaped("=, ", ",= \\", "tag key")
        cursor.expect("=")
        value = cursor.read_escaped(", =", ",= \\", "tag value")
        if cursor.peek() == "=":
            raise cursor.fail("unescaped '=' in a tag value")
        if key in tags:
            raise cursor.fail(f"tag {key!r} repeated")
        tags[key] = value
    cursor.expect(" ")
    fields: dict[str, Any] = {}
    raw_fields: dict[str, str] = {}
    while True:
        key = cursor.read_escaped("=, ", ",= \\", "field key")
        cursor.expect("=")
        if key in fields:
            raise cursor.fail(f"field {key!r} repeated")
        fields[key], raw_fields[key] = cursor.read_field_value()
        if cursor.peek() != ",":
            break
        cursor.pos += 1
    timestamp: int | None = None
    if cursor.peek() == " ":
        cursor.pos += 1
        raw = cursor.line[cursor.pos :]
        if not _TIMESTAMP.match(raw):
            raise cursor.fail(f"timestamp {raw!r} is not an integer")
        timestamp = int(raw)
        cursor.pos = len(cursor.line)
    if not cursor.at_end():
        raise cursor.fail("unexpected text after the fields")
    return Point(measurement, tags, fields, timestamp, raw_fields)


def parse_line_protocol(body: str) -> list[Point]:
    """Parse a write body: lines separated by ``\\n``, a final newline optional, no blank lines in between."""
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    points = []
    for number, line in enumerate(lines, start=1):
        if not line:
            raise LineProtocolError(f"line {number} is blank")
        points.append(parse_line(line, number))
    return points


@attrs.frozen
class ReceivedWrite:
    """One request the receiver got, with the status it answered and why."""

    received_at: float
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str
    status: int
    problem: str | None
    points: tuple[Point, ...]


class GreptimeReceiver:
    """The local receiver (see the module docs); ``endpoint`` is what a ``GreptimeConfig.endpoint`` takes."""

    def __init__(self, database: str = "public", username: str | None = None, password: str | None = None) -> None:
        self.database = database
        self.credentials = None if username is None else (username, password or "")
        self._lock = threading.Lock()
        self._writes: list[ReceivedWrite] = []
        self._failures_left = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def do_GET(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def writes(self) -> list[ReceivedWrite]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._writes)

    def accepted(self) -> list[ReceivedWrite]:
        """The requests answered 204."""
        return [w for w in self.writes if w.status == 204]

    def fail_next(self, count: int) -> None:
        """Answer the next ``count`` writes with 500 (after checking them)."""
        with self._lock:
            self._failures_left = count

    def _check(self, request: BaseHTTPRequestHandler, body: str) -> tuple[int, str | None, tuple[Point, ...]]:
        url = urllib.parse.urlsplit(request.path)
        if request.command != "POST":
            return 405, f"method {request.command} is not POST", ()
        if url.path != WRITE_PATH:
            return 404, f"path {url.path!r} is not {WRITE_PATH}", ()
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if query.get("db") != [self.database]:
            return 400, f"db parameter {query.get('db')} is not [{self.database!r}]", ()
        if query.get("precision") != ["ms"]:
            return 400, f"precision parameter {query.get('precision')} is not ['ms']", ()
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode("ascii")
            if request.headers.get("Authorization") != expected:
                return (
                    401,
                    f"Authorization {request.headers.get('Authorization')!r} is not the expected Basic credentials",
                    (),
                )
        try:
            points = tuple(parse_line_protocol(body))
        except LineProtocolError as exc:
            return 400, str(exc), ()
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                return 500, "failing on request (fail_next)", points
        return 204, None, points

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length)
        try:
            body = raw.decode("utf-8")
            status, problem, points = self._check(request, body)
        except UnicodeDecodeError as exc:
            body, status, problem, points = repr(raw), 400, f"body is not UTF-8: {exc}", ()
        url = urllib.parse.urlsplit(request.path)
        write = ReceivedWrite(
            received_at=time.monotonic(),
            method=request.command,
            path=url.path,
            query=urllib.parse.parse_qs(url.query, keep_blank_values=True),
            headers={k: v for k, v in request.headers.items()},
            body=body,
            status=status,
            problem=problem,
            points=points,
        )
        with self._lock:
            self._writes.append(write)
        reply = b"" if status == 204 else (problem or "").encode()
        request.send_response(status)
        request.send_header("Content-Length", str(len(reply)))
        request.end_headers()
        if reply:
            request.wfile.write(reply)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def __enter__(self) -> GreptimeReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
