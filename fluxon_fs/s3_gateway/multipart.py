"""Multipart uploads kept in the export itself, beside their key, so the gateway holds no upload state.

An upload ``U`` of key ``dir/name`` is the marker file ``dir/.fluxon-s3-U.upload`` (holding the key)
and one file per part, ``dir/.fluxon-s3-U.<part number>.<md5>`` — the part's ETag is its MD5, kept
in the name. Parts are written under a staging name and renamed into place, so a listed part is
whole. Completing concatenates the named parts into a staging file that is renamed onto the key:
until then nothing is visible at the key, and a failure leaves the previous object. Listings never
show staging names, and keys cannot name them (:mod:`fluxon_fs.s3_gateway.keys`).
"""

from __future__ import annotations

import hashlib
import re
import secrets

import attrs

from fluxon_fs.config import S3GatewayConfig
from fluxon_fs.export.ops import FileStat
from fluxon_fs.s3_gateway.bucket import Bucket, StagedWrite, copy_into, join, parent_of
from fluxon_fs.s3_gateway.errors import S3Error

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_PART_NAME = re.compile(r"^\.fluxon-s3-([0-9a-f]{32})\.([0-9]{5})\.([0-9a-f]{32})$")


@attrs.frozen
class StoredPart:
    """A part as stored: number, ETag (MD5, unquoted), size, last change."""

    number: int
    etag: str
    size: int
    mtime_ns: int
    name: str


class MultipartUploads:
    """Create, fill, list, complete and abort multipart uploads of one bucket."""

    def __init__(self, bucket: Bucket, limits: S3GatewayConfig) -> None:
        self._bucket = bucket
        self._limits = limits

    def _marker(self, relpath: str, upload_id: str) -> str:
        return join(parent_of(relpath), f".fluxon-s3-{upload_id}.upload")

    def _no_such_upload(self, key: str) -> S3Error:
        return S3Error(
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been "
            "aborted or completed.",
            resource=f"/{self._bucket.name}/{key}",
        )

    def _check(self, relpath: str, key: str, upload_id: str) -> None:
        """Raise ``NoSuchUpload`` unless ``upload_id`` is an upload of this key."""
        if not _UPLOAD_ID.match(upload_id):
            raise self._no_such_upload(key)
        try:
            content = self._bucket.open_content(self._marker(relpath, upload_id), key=key)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise self._no_such_upload(key) from None
            raise
        try:
            recorded = content.read(0, 4096).decode("utf-8", "replace")
        finally:
            content.close()
        if recorded != key:
            raise self._no_such_upload(key)

    def create(self, relpath: str, key: str) -> str:
        """A new upload of ``key``; its id."""
        upload_id = secrets.token_hex(16)
        writer = StagedWrite(self._bucket, self._marker(relpath, upload_id))
        writer.write(key.encode("utf-8"))
        writer.commit()
        return upload_id

    def parts(self, relpath: str, key: str, upload_id: str) -> list[StoredPart]:
        """The upload's stored parts by number."""
        self._check(relpath, key, upload_id)
        found = []
        for entry in self._bucket.entries(parent_of(relpath)):
            match = _PART_NAME.match(entry.name)
            if match and match.group(1) == upload_id:
                found.append(
                    StoredPart(int(match.group(2)), match.group(3), entry.stat.size, entry.stat.mtime_ns, entry.name)
                )
        return sorted(found, key=lambda part: part.number)

    def start_part(self, relpath: str, key: str, upload_id: str, number: int) -> PartWrite:
        """A writer for part ``number`` (1 to ``max_parts``)."""
        if not 1 <= number <= min(self._limits.max_parts, 99_999):
            raise S3Error("InvalidArgument", f"Part number must be an integer between 1 and {self._limits.max_parts}")
        self._check(relpath, key, upload_id)
        return PartWrite(self, relpath, upload_id, number)

    def complete(self, relpath: str, key: str, upload_id: str, listed: list[tuple[int, str]]) -> FileStat:
        """Publish the listed parts, in order, as the object at ``key``; the new object's stat."""
        stored = {part.number: part for part in self.parts(relpath, key, upload_id)}
        numbers = [number for number, _ in listed]
        if numbers != sorted(set(numbers)):
            raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order.")
        chosen = []
        for number, etag in listed:
            part = stored.get(number)
            if part is None or part.etag != etag:
                raise S3Error(
                    "InvalidPart",
                    f"Part {number} was not uploaded or its ETag does not match.",
                    resource=f"/{self._bucket.name}/{key}",
                )
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < self._limits.min_part_bytes:
                raise S3Error(
                    "EntityTooSmall",
                    f"Part {part.number} is {part.size} bytes; every part but the last must be at least "
                    f"{int(self._limits.min_part_bytes)} bytes.",
                )
        if sum(part.size for part in chosen) > self._limits.max_object_bytes:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
        directory = parent_of(relpath)
        writer = StagedWrite(self._bucket, relpath)
        try:
            for part in chosen:
                copy_into(self._bucket.open_content(join(directory, part.name), key=key), writer)
        except BaseException:
            writer.abort()
            raise
        stat = writer.commit()
        self._remove(relpath, upload_id, stored.values())
        return stat

    def abort(self, relpath: str, key: str, upload_id: str) -> None:
        """Drop the upload and its parts."""
        self._remove(relpath, upload_id, self.parts(relpath, key, upload_id))

    def _remove(self, relpath: str, upload_id: str, parts: object) -> None:
        directory = parent_of(relpath)
        for part in parts:  # type: ignore[attr-defined]
            self._bucket.remove_quietly(join(directory, part.name))
        self._bucket.remove_quietly(self._marker(relpath, upload_id))


class PartWrite:
    """One part being uploaded: written under a staging name, renamed to its numbered name when whole."""

    def __init__(self, uploads: MultipartUploads, relpath: str, upload_id: str, number: int) -> None:
        self._uploads = uploads
        self._relpath = relpath
        self._upload_id = upload_id
        self._number = number
        self._digest = hashlib.md5(usedforsecurity=False)
        self._writer = StagedWrite(uploads._bucket, join(parent_of(relpath), f".fluxon-s3-{upload_id}.part"))

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._writer.size

    def write(self, data: bytes) -> None:
        """Append ``data`` (``EntityTooLarge`` past ``max_part_bytes``)."""
        if self._writer.size + len(data) > self._uploads._limits.max_part_bytes:
            self._writer.abort()
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed part size.")
        self._digest.update(data)
        self._writer.write(data)

    def commit(self) -> str:
        """Store the part (replacing an earlier upload of the same number); its ETag (unquoted MD5)."""
        etag = self._digest.hexdigest()
        bucket = self._uploads._bucket
        directory = parent_of(self._relpath)
        name = f".fluxon-s3-{self._upload_id}.{self._number:05d}.{etag}"
        self._writer.relpath = join(directory, name)
        self._writer.commit()
        for entry in bucket.entries(directory):
            match = _PART_NAME.match(entry.name)
            same_part = match and match.group(1) == self._upload_id and int(match.group(2)) == self._number
            if same_part and entry.name != name:
                bucket.remove_quietly(join(directory, entry.name))
        return etag

    def abort(self) -> None:
        """Drop what was written."""
        self._writer.abort()
