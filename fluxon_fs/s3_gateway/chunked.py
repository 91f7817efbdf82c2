"""Request bodies as signed: plain (its SHA-256 checked when declared) or ``aws-chunked``.

``aws-chunked`` frames the payload as ``<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n`` ending
with a zero-size chunk and optional trailers (``x-amz-checksum-crc32: ...``). With
``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` every chunk's signature chains from the request's signature
and is checked; with ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` the request signature covers the
headers only and a trailing checksum, when it is one this module knows, is checked.

Decoders are fed the body as it arrives and return the payload bytes decoded so far; ``finish``
raises when the body ended early or did not match what was signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib
from collections.abc import Callable
from typing import Protocol

from fluxon_fs.s3_gateway.errors import S3Error
from fluxon_fs.s3_gateway.sigv4 import (
    EMPTY_SHA256,
    STREAMING_SIGNED,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    Signature,
    hmac_hex,
)

MAX_CHUNK_HEADER_BYTES = 4096
MAX_TRAILER_BYTES = 16 * 1024


class BodyDecoder(Protocol):
    """Turns the request body into payload bytes, checking what the signature promised."""

    def feed(self, data: bytes) -> bytes:
        """Payload bytes decoded from ``data`` (and what was buffered before)."""
        ...

    def finish(self) -> None:
        """The body ended: raise unless it was complete and as signed."""
        ...


class PlainBody:
    """A body sent as is; its SHA-256 must be ``expected_sha256`` unless that is None (unsigned), and a
    checksum header (``x-amz-checksum-crc32`` / ``-sha1`` / ``-sha256``), when sent, must match too."""

    def __init__(self, expected_sha256: str | None, checksum: tuple[str, str] | None = None) -> None:
        self._expected = expected_sha256
        self._digest = hashlib.sha256() if expected_sha256 is not None else None
        self._checksum_header = checksum
        self._checksum = _CHECKSUMS[checksum[0]]() if checksum is not None else None

    def feed(self, data: bytes) -> bytes:
        if self._digest is not None:
            self._digest.update(data)
        if self._checksum is not None:
            self._checksum.update(data)
        return data

    def finish(self) -> None:
        if self._digest is not None and self._digest.hexdigest() != self._expected:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        if self._checksum is not None and self._checksum_header is not None:
            name, sent = self._checksum_header
            if base64.b64encode(self._checksum.digest()).decode("ascii") != sent.strip():
                raise S3Error("BadDigest", f"The {name} you specified did not match the calculated checksum.")


class _Checksum(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


_CHECKSUMS: dict[str, Callable[[], _Checksum]] = {
    "x-amz-checksum-crc32": lambda: _Crc32(),
    "x-amz-checksum-sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "x-amz-checksum-sha256": lambda: hashlib.sha256(),
}


class _Crc32:
    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class ChunkedBody:
    """An ``aws-chunked`` body; with ``signing_key``, every chunk signature is checked."""

    def __init__(self, signature: Signature, signing_key: bytes | None, trailer_name: str | None) -> None:
        self._signature = signature
        self._signing_key = signing_key
        self._previous = signature.signature
        self._buffer = bytearray()
        self._remaining: int | None = None
        """Bytes of the current chunk still to come (None: a chunk header is next)."""
        self._chunk = hashlib.sha256()
        self._chunk_signature = ""
        self._done = False
        self._trailer_name = trailer_name
        self._checksum = _CHECKSUMS[trailer_name]() if trailer_name in _CHECKSUMS else None

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while not self._done:
            if self._remaining is None:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_CHUNK_HEADER_BYTES:
                        raise S3Error("IncompleteBody", "aws-chunked: chunk header too long")
                    break
                self._start_chunk(bytes(self._buffer[:end]))
                del self._buffer[: end + 2]
                if self._remaining == 0:
                    self._end_chunk()
                    self._done = True
                    break
                continue
            if self._remaining > 0:
                take = min(self._remaining, len(self._buffer))
                if not take:
                    break
                piece = bytes(self._buffer[:take])
                del self._buffer[:take]
                self._remaining -= take
                self._chunk.update(piece)
                if self._checksum is not None:
                    self._checksum.update(piece)
                out += piece
                continue
            if len(self._buffer) < 2:
                break
            if self._buffer[:2] != b"\r\n":
                raise S3Error("IncompleteBody", "aws-chunked: a chunk is longer than its declared size")
            del self._buffer[:2]
            self._end_chunk()
            self._remaining = None
        return bytes(out)

    def _start_chunk(self, header: bytes) -> None:
        size_text, _, extension = header.decode("latin-1").partition(";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise S3Error("IncompleteBody", f"aws-chunked: bad chunk size {size_text!r}") from None
        self._chunk_signature = extension.partition("chunk-signature=")[2].strip()
        if self._signing_key is not None and not self._chunk_signature:
            raise S3Error("SignatureDoesNotMatch", "aws-chunked: a chunk carries no chunk-signature")
        self._remaining = size
        self._chunk = hashlib.sha256()

    def _end_chunk(self) -> None:
        if self._signing_key is None:
            return
        scope = self._signature.scope.text
        text = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{self._signature.amz_date}\n{scope}\n{self._previous}\n"
            f"{EMPTY_SHA256}\n{self._chunk.hexdigest()}"
        )
        expected = hmac_hex(self._signing_key, text)
        if not hmac.compare_digest(expected, self._chunk_signature):
            raise S3Error("SignatureDoesNotMatch", "aws-chunked: a chunk signature does not match")
        self._previous = expected

    def finish(self) -> None:
        if not self._done:
            raise S3Error("IncompleteBody", "You did not provide the number of bytes specified by the chunk sizes")
        trailers = bytes(self._buffer)
        if len(trailers) > MAX_TRAILER_BYTES:
            raise S3Error("IncompleteBody", "aws-chunked: trailers too long")
        values = {}
        for line in trailers.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                values[name.strip().lower()] = value.strip()
        if self._checksum is not None and self._trailer_name is not None:
            sent = values.get(self._trailer_name)
            if sent is None:
                raise S3Error("IncompleteBody", f"aws-chunked: the trailer {self._trailer_name} is missing")
            if base64.b64encode(self._checksum.digest()).decode("ascii") != sent:
                raise S3Error(
                    "BadDigest", f"The {self._trailer_name} you specified did not match the calculated checksum."
                )


def body_decoder(signature: Signature, signing_key: bytes, headers: dict[str, str]) -> BodyDecoder:
    """The decoder for a request body signed with ``signature``."""
    payload = signature.payload_hash
    checksum = next(((name, headers[name]) for name in _CHECKSUMS if name in headers), None)
    if payload == UNSIGNED_PAYLOAD:
        return PlainBody(None, checksum)
    if payload == STREAMING_SIGNED:
        return ChunkedBody(signature, signing_key, None)
    if payload == STREAMING_UNSIGNED_TRAILER:
        trailer = headers.get("x-amz-trailer", "").strip().lower() or None
        return ChunkedBody(signature, None, trailer)
    return PlainBody(payload, checksum)
