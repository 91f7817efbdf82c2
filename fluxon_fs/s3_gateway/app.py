"""The S3 HTTP API (path-style addressing): authentication, routing to operations, S3 XML answers.

Every request is authenticated before anything else is looked at: a SigV4 signature (header or
presigned URL) made with a live access key for this gateway's region and service ``s3``, signed
within ``max_clock_skew_s``. The request then runs as the key's user (:class:`~fluxon_fs.s3_gateway.gateway.S3Gateway`).
Operations this gateway does not implement answer ``NotImplemented``, never a silent success.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, unquote_to_bytes

import attrs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from fluxon_core.log_setup import get_logger
from fluxon_fs.export.ops import FileStat
from fluxon_fs.patcher.piece_reader import PinnedContent
from fluxon_fs.s3_gateway import xml_bodies
from fluxon_fs.s3_gateway.bucket import Bucket, StagedWrite, copy_into, etag_of
from fluxon_fs.s3_gateway.chunked import BodyDecoder, body_decoder
from fluxon_fs.s3_gateway.credentials import KeyHolder
from fluxon_fs.s3_gateway.errors import S3Error, s3_error_of
from fluxon_fs.s3_gateway.keys import is_folder_key, key_relpath
from fluxon_fs.s3_gateway.multipart import MultipartUploads
from fluxon_fs.s3_gateway.sigv4 import (
    STREAMING_PAYLOADS,
    ArrivedRequest,
    Signature,
    check_signature,
    check_time,
    parse_signature,
    split_query,
)

if TYPE_CHECKING:
    from fluxon_fs.s3_gateway.gateway import S3Gateway

log = get_logger("fluxon.s3.api")

WRITE_BATCH_BYTES = 8 * 1024 * 1024
"""Request body bytes gathered before one write to the agent."""
WHOLE_BODY_BYTES = 1024 * 1024
"""Objects up to this size are answered in one piece instead of streamed."""
SIGNING_PARAMS = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
     "X-Amz-Signature", "X-Amz-Security-Token", "x-id"}
)  # fmt: skip
LIST_PARAMS = frozenset(
    {"list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after", "marker",
     "encoding-type", "fetch-owner"}
)  # fmt: skip
GET_PARAMS = frozenset(
    {"response-content-type", "response-content-disposition", "response-content-encoding",
     "response-content-language", "response-cache-control", "response-expires"}
)  # fmt: skip
EMPTY_MD5_ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'
RESPONSE_OVERRIDES = (
    ("response-content-type", "Content-Type"),
    ("response-content-disposition", "Content-Disposition"),
    ("response-content-encoding", "Content-Encoding"),
    ("response-content-language", "Content-Language"),
    ("response-cache-control", "Cache-Control"),
    ("response-expires", "Expires"),
)


@attrs.frozen
class Call:
    """One authenticated request: what arrived, its signature, the key's holder, bucket and key."""

    request: Request
    arrived: ArrivedRequest
    signature: Signature
    holder: KeyHolder
    bucket_name: str
    key: str

    def param(self, name: str) -> str | None:
        """A query parameter."""
        return self.arrived.query_value(name)

    def has(self, name: str) -> bool:
        """True when the query names ``name``."""
        return any(key == name for key, _ in self.arrived.query)

    def header(self, name: str) -> str | None:
        """A request header (lower-case name)."""
        return self.arrived.headers.get(name)


Operation = Callable[["S3Gateway", Call], Awaitable[Response]]


def _arrived(request: Request) -> ArrivedRequest:
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI: not UTF-8", status=400) from None
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    return ArrivedRequest(
        request.method, path, split_query(raw_query), headers, raw_path=raw_path.decode("latin-1"), raw_query=raw_query
    )


def _xml(root: str, children: xml_bodies.Tree, status: int = 200) -> Response:
    return Response(xml_bodies.document(root, children), status_code=status, media_type="application/xml")


def _error_response(error: S3Error, request_id: str, method: str) -> Response:
    headers = {"x-amz-request-id": request_id}
    if method == "HEAD":
        return Response(status_code=error.status, headers=headers)
    body = xml_bodies.error_document(error, request_id)
    return Response(body, status_code=error.status, media_type="application/xml", headers=headers)


def _refuse_params(call: Call, allowed: frozenset[str], operation: str) -> None:
    for name, _ in call.arrived.query:
        if name not in allowed and name not in SIGNING_PARAMS:
            raise S3Error("NotImplemented", f"{operation} with ?{name} is not implemented by this gateway")


def _not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", f"{what} is not implemented by this gateway (see docs/s3.md)")


# ----- bodies -------------------------------------------------------------------------------------


def _decoder(call: Call) -> BodyDecoder:
    return body_decoder(call.signature, call.holder.signing_key, dict(call.arrived.headers))


def _declared_length(call: Call) -> int | None:
    text = (
        call.header("x-amz-decoded-content-length")
        if call.signature.payload_hash in STREAMING_PAYLOADS
        else call.header("content-length")
    )
    if text is None:
        return None
    if not text.strip().isdigit():
        raise S3Error("InvalidArgument", f"bad content length {text!r}")
    return int(text)


async def _read_small_body(call: Call, limit: int) -> bytes:
    decoder = _decoder(call)
    body = bytearray()
    async for chunk in call.request.stream():
        body += decoder.feed(chunk)
        if len(body) > limit:
            raise S3Error("InvalidRequest", f"request body larger than {limit} bytes")
    decoder.finish()
    return bytes(body)


async def _pump_body(call: Call, write: Callable[[bytes], None], limit: int, too_large: S3Error) -> int:
    """Feed the decoded request body to ``write`` in batches; the payload's size."""
    declared = _declared_length(call)
    if declared is None and call.header("transfer-encoding") is None:
        raise S3Error("MissingContentLength", "You must provide the Content-Length HTTP header.")
    if declared is not None and declared > limit:
        raise too_large
    decoder = _decoder(call)
    batch = bytearray()
    total = 0
    async for chunk in call.request.stream():
        data = decoder.feed(chunk)
        total += len(data)
        if total > limit:
            raise too_large
        batch += data
        if len(batch) >= WRITE_BATCH_BYTES:
            await run_in_threadpool(write, bytes(batch))
            batch.clear()
    decoder.finish()
    if declared is not None and total != declared:
        raise S3Error("IncompleteBody", "You did not provide the number of bytes specified by the Content-Length")
    if batch:
        await run_in_threadpool(write, bytes(batch))
    return total


# ----- service and buckets ------------------------------------------------------------------------


async def list_buckets(gateway: S3Gateway, call: Call) -> Response:
    """ListBuckets: the exports the user has a grant on."""
    _refuse_params(call, frozenset(), "ListBuckets")
    names = await run_in_threadpool(gateway.bucket_names, call.holder.username)
    owner = {"ID": call.holder.username, "DisplayName": call.holder.username}
    buckets = [("Bucket", {"Name": name, "CreationDate": xml_bodies.iso_time(0)}) for name in names]
    return _xml("ListAllMyBucketsResult", [("Owner", owner), ("Buckets", buckets)])


async def _bucket(gateway: S3Gateway, call: Call) -> Bucket:
    return await run_in_threadpool(gateway.bucket, call.holder.username, call.bucket_name)


async def head_bucket(gateway: S3Gateway, call: Call) -> Response:
    """HeadBucket: 200 when the bucket exists and the user may reach it."""
    bucket = await _bucket(gateway, call)
    await run_in_threadpool(bucket.check_reachable)
    return Response(headers={"x-amz-bucket-region": gateway.settings.region})


async def bucket_location(gateway: S3Gateway, call: Call) -> Response:
    """GetBucketLocation: this gateway's region."""
    bucket = await _bucket(gateway, call)
    await run_in_threadpool(bucket.check_reachable)
    region = gateway.settings.region
    body = xml_bodies.document("LocationConstraint", [])
    if region != "us-east-1":
        body = body.replace(b"/>", f">{region}</LocationConstraint>".encode(), 1)
    return Response(body, media_type="application/xml")


def _token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8")).decode("ascii")


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


async def list_objects(gateway: S3Gateway, call: Call) -> Response:
    """ListObjectsV2 (``list-type=2``) and ListObjects (v1, ``marker``)."""
    _refuse_params(call, LIST_PARAMS, "ListObjects")
    version_2 = call.param("list-type") == "2"
    prefix = call.param("prefix") or ""
    delimiter = call.param("delimiter") or ""
    encoding = call.param("encoding-type")
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
    max_text = call.param("max-keys")
    if max_text is not None and not max_text.isdigit():
        raise S3Error("InvalidArgument", "Provided max-keys not an integer or within integer range")
    max_keys = min(int(max_text) if max_text is not None else 1000, gateway.settings.max_keys)
    token = call.param("continuation-token")
    start_after = call.param("start-after") or ""
    marker = (_untoken(token) if token else start_after) if version_2 else call.param("marker") or ""
    bucket = await _bucket(gateway, call)
    page = await run_in_threadpool(bucket.listing, prefix=prefix, delimiter=delimiter, marker=marker, max_keys=max_keys)

    def shown(text: str) -> str:
        return quote(text, safe="/") if encoding == "url" else text

    head: list[tuple[str, Any]] = [("Name", call.bucket_name), ("Prefix", shown(prefix))]
    if version_2:
        head += [("KeyCount", len(page.objects) + len(page.common_prefixes))]
        if token is not None:
            head.append(("ContinuationToken", token))
        if start_after:
            head.append(("StartAfter", shown(start_after)))
    else:
        head.append(("Marker", shown(marker)))
    head += [("MaxKeys", max_keys)]
    if delimiter:
        head.append(("Delimiter", shown(delimiter)))
    if encoding:
        head.append(("EncodingType", encoding))
    head.append(("IsTruncated", page.truncated))
    if page.truncated:
        head.append(
            ("NextContinuationToken", _token(page.next_marker))
            if version_2
            else ("NextMarker", shown(page.next_marker))
        )
    contents = [
        (
            "Contents",
            [
                ("Key", shown(item.key)),
                ("LastModified", xml_bodies.iso_time(item.stat.mtime_ns / 1e9)),
                ("ETag", EMPTY_MD5_ETAG if is_folder_key(item.key) else etag_of(item.stat)),
                ("Size", 0 if is_folder_key(item.key) else item.stat.size),
                ("StorageClass", "STANDARD"),
            ],
        )
        for item in page.objects
    ]
    prefixes = [("CommonPrefixes", [("Prefix", shown(p))]) for p in page.common_prefixes]
    return _xml("ListBucketResult", head + contents + prefixes)


async def delete_objects(gateway: S3Gateway, call: Call) -> Response:
    """DeleteObjects: up to 1000 keys; each answered as deleted or with its own error."""
    body = await _read_small_body(call, xml_bodies.MAX_REQUEST_XML_BYTES)
    keys, quiet = xml_bodies.delete_keys(body)
    bucket = await _bucket(gateway, call)

    def delete_all() -> list[tuple[str, Any]]:
        results: list[tuple[str, Any]] = []
        for key in keys:
            try:
                bucket.delete(key_relpath(call.bucket_name, key), key)
                if not quiet:
                    results.append(("Deleted", [("Key", key)]))
            except S3Error as exc:
                results.append(("Error", [("Key", key), ("Code", exc.code), ("Message", exc.message)]))
        return results

    return _xml("DeleteResult", await run_in_threadpool(delete_all))


# ----- objects ------------------------------------------------------------------------------------


def _object_headers(stat: FileStat, key: str) -> dict[str, str]:
    return {
        "ETag": EMPTY_MD5_ETAG if is_folder_key(key) else etag_of(stat),
        "Last-Modified": xml_bodies.http_time(stat.mtime_ns / 1e9),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/x-directory" if is_folder_key(key) else "application/octet-stream",
    }


def _http_date(text: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _etag_matches(condition: str, etag: str) -> bool:
    wanted = [item.strip() for item in condition.split(",")]
    return "*" in wanted or etag in wanted or etag.strip('"') in [w.strip('"') for w in wanted]


def _preconditions(call: Call, headers: dict[str, str], stat: FileStat) -> Response | None:
    """The 304/412 answer the conditional headers call for, or None to go on."""
    etag = headers["ETag"]
    modified = int(stat.mtime_ns // 1_000_000_000)
    if_match, if_none_match = call.header("if-match"), call.header("if-none-match")
    if if_match is not None and not _etag_matches(if_match, etag):
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
    unmodified_since = _http_date(call.header("if-unmodified-since") or "")
    if if_match is None and unmodified_since is not None and modified > unmodified_since:
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
    not_modified = {name: headers[name] for name in ("ETag", "Last-Modified")}
    if if_none_match is not None:
        if _etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=not_modified)
        return None
    modified_since = _http_date(call.header("if-modified-since") or "")
    if modified_since is not None and modified <= modified_since:
        return Response(status_code=304, headers=not_modified)
    return None


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``bytes=`` range (None: the whole object)."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None  # not a range this gateway serves: the whole object, as HTTP allows
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            length = int(last)
            if length <= 0:
                raise ValueError
            return max(size - length, 0), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        raise S3Error("InvalidRange", "The requested range is not satisfiable")
    return start, min(end, size)


async def head_object(gateway: S3Gateway, call: Call) -> Response:
    """HeadObject."""
    _refuse_params(call, GET_PARAMS, "HeadObject")
    relpath = key_relpath(call.bucket_name, call.key)

    def stat_object() -> FileStat:
        return gateway.bucket(call.holder.username, call.bucket_name).stat(relpath, key=call.key)

    stat = await run_in_threadpool(stat_object)
    headers = _object_headers(stat, call.key)
    answered = _preconditions(call, headers, stat)
    if answered is not None:
        return answered
    size = 0 if is_folder_key(call.key) else stat.size
    return Response(status_code=200, headers={**headers, "Content-Length": str(size)})


async def get_object(gateway: S3Gateway, call: Call) -> Response:
    """GetObject, with a single byte range and the conditional headers.

    Everything up to the body — the bucket, the version opened, the conditions, and a small body
    itself — runs in one worker-thread hop: each hop costs a thread handoff, which dominates a
    small GET on a busy host.
    """
    _refuse_params(call, GET_PARAMS, "GetObject")
    relpath = key_relpath(call.bucket_name, call.key)
    prepared = await run_in_threadpool(_prepare_get, gateway, call, relpath)
    if isinstance(prepared, Response):
        return prepared
    bucket, content, start, end, status, headers = prepared
    return StreamingResponse(bucket.read_stream(content, start, end), status_code=status, headers=headers)


def _prepare_get(
    gateway: S3Gateway, call: Call, relpath: str
) -> Response | tuple[Bucket, PinnedContent, int, int, int, dict[str, str]]:
    bucket = gateway.bucket(call.holder.username, call.bucket_name)
    if is_folder_key(call.key):
        stat = bucket.stat(relpath, key=call.key)
        return Response(b"", headers=_object_headers(stat, call.key))
    content = bucket.open_content(relpath, key=call.key)
    try:
        headers = _object_headers(content.stat, call.key)
        for param, header in RESPONSE_OVERRIDES:
            value = call.param(param)
            if value is not None:
                headers[header] = value
        answered = _preconditions(call, headers, content.stat)
        if answered is not None:
            content.close()
            return answered
        size = content.size
        span = _range(call.header("range"), size)
        start, end = span if span is not None else (0, size)
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if end - start <= WHOLE_BODY_BYTES:
            return Response(b"".join(bucket.read_stream(content, start, end)), status_code=status, headers=headers)
    except BaseException:
        content.close()
        raise
    return bucket, content, start, end, status, headers


async def put_object(gateway: S3Gateway, call: Call) -> Response:
    """PutObject: the body is staged and published in one rename when complete and as signed."""
    _refuse_params(call, frozenset(), "PutObject")
    relpath = key_relpath(call.bucket_name, call.key)
    bucket = await _bucket(gateway, call)
    if is_folder_key(call.key):
        await _read_small_body(call, 0)
        stat = await run_in_threadpool(bucket.put_folder, relpath, call.key)
        return Response(headers={"ETag": EMPTY_MD5_ETAG})
    limit = int(gateway.settings.max_object_bytes)
    too_large = S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
    declared = _declared_length(call)
    if declared is not None and declared > limit:
        raise too_large
    writer = await run_in_threadpool(StagedWrite, bucket, relpath)
    try:
        await _pump_body(call, writer.write, limit, too_large)
    except BaseException:
        await run_in_threadpool(writer.abort)
        raise
    stat = await run_in_threadpool(writer.commit)
    return Response(headers={"ETag": etag_of(stat)})


def _copy_source(call: Call) -> tuple[str, str]:
    source = unquote(call.header("x-amz-copy-source") or "")
    if "?versionId=" in source:
        raise _not_implemented("copying a version")
    bucket, _, key = source.lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
    return bucket, key


async def copy_object(gateway: S3Gateway, call: Call) -> Response:
    """CopyObject: read through the pool, written like a PutObject (metadata is not kept, so only COPY)."""
    _refuse_params(call, frozenset(), "CopyObject")
    for name in call.arrived.headers:
        if name.startswith("x-amz-copy-source-if") or name == "x-amz-copy-source-range":
            raise _not_implemented(f"CopyObject with {name}")
    source_bucket_name, source_key = _copy_source(call)
    source_relpath = key_relpath(source_bucket_name, source_key)
    relpath = key_relpath(call.bucket_name, call.key)
    source_bucket = await run_in_threadpool(gateway.bucket, call.holder.username, source_bucket_name)
    bucket = await _bucket(gateway, call)

    def copy() -> FileStat:
        content = source_bucket.open_content(source_relpath, key=source_key)
        if content.size > gateway.settings.max_object_bytes:
            content.close()
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
        writer = StagedWrite(bucket, relpath)
        try:
            copy_into(content, writer)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    stat = await run_in_threadpool(copy)
    return _xml(
        "CopyObjectResult",
        [("LastModified", xml_bodies.iso_time(stat.mtime_ns / 1e9)), ("ETag", etag_of(stat))],
    )


async def delete_object(gateway: S3Gateway, call: Call) -> Response:
    """DeleteObject (a missing key is deleted already)."""
    _refuse_params(call, frozenset(), "DeleteObject")
    relpath = key_relpath(call.bucket_name, call.key)
    bucket = await _bucket(gateway, call)
    await run_in_threadpool(bucket.delete, relpath, call.key)
    return Response(status_code=204)


# ----- multipart ----------------------------------------------------------------------------------


async def _uploads(gateway: S3Gateway, call: Call) -> tuple[MultipartUploads, str]:
    relpath = key_relpath(call.bucket_name, call.key)
    if is_folder_key(call.key):
        raise S3Error("InvalidArgument", "a folder key cannot be uploaded in parts")
    bucket = await _bucket(gateway, call)
    return MultipartUploads(bucket, gateway.settings), relpath


async def create_upload(gateway: S3Gateway, call: Call) -> Response:
    """CreateMultipartUpload."""
    _refuse_params(call, frozenset({"uploads"}), "CreateMultipartUpload")
    uploads, relpath = await _uploads(gateway, call)
    upload_id = await run_in_threadpool(uploads.create, relpath, call.key)
    return _xml(
        "InitiateMultipartUploadResult", [("Bucket", call.bucket_name), ("Key", call.key), ("UploadId", upload_id)]
    )


async def upload_part(gateway: S3Gateway, call: Call) -> Response:
    """UploadPart."""
    _refuse_params(call, frozenset({"partNumber", "uploadId"}), "UploadPart")
    if call.header("x-amz-copy-source") is not None:
        raise _not_implemented("UploadPartCopy")
    number_text = call.param("partNumber") or ""
    if not number_text.isdigit():
        raise S3Error("InvalidArgument", "Part number must be an integer")
    uploads, relpath = await _uploads(gateway, call)
    writer = await run_in_threadpool(
        uploads.start_part, relpath, call.key, call.param("uploadId") or "", int(number_text)
    )
    too_large = S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed part size.")
    try:
        await _pump_body(call, writer.write, int(gateway.settings.max_part_bytes), too_large)
    except BaseException:
        await run_in_threadpool(writer.abort)
        raise
    etag = await run_in_threadpool(writer.commit)
    return Response(headers={"ETag": f'"{etag}"'})


async def complete_upload(gateway: S3Gateway, call: Call) -> Response:
    """CompleteMultipartUpload: the object appears at its key in one rename."""
    _refuse_params(call, frozenset({"uploadId"}), "CompleteMultipartUpload")
    body = await _read_small_body(call, xml_bodies.MAX_REQUEST_XML_BYTES)
    listed = xml_bodies.completed_parts(body)
    uploads, relpath = await _uploads(gateway, call)
    stat = await run_in_threadpool(uploads.complete, relpath, call.key, call.param("uploadId") or "", listed)
    return _xml(
        "CompleteMultipartUploadResult",
        [
            ("Location", f"{gateway.url}/{call.bucket_name}/{quote(call.key)}"),
            ("Bucket", call.bucket_name),
            ("Key", call.key),
            ("ETag", etag_of(stat)),
        ],
    )


async def abort_upload(gateway: S3Gateway, call: Call) -> Response:
    """AbortMultipartUpload."""
    _refuse_params(call, frozenset({"uploadId"}), "AbortMultipartUpload")
    uploads, relpath = await _uploads(gateway, call)
    await run_in_threadpool(uploads.abort, relpath, call.key, call.param("uploadId") or "")
    return Response(status_code=204)


async def list_parts(gateway: S3Gateway, call: Call) -> Response:
    """ListParts (``max-parts``, ``part-number-marker``)."""
    _refuse_params(call, frozenset({"uploadId", "max-parts", "part-number-marker"}), "ListParts")
    uploads, relpath = await _uploads(gateway, call)
    upload_id = call.param("uploadId") or ""
    parts = await run_in_threadpool(uploads.parts, relpath, call.key, upload_id)
    marker_text, max_text = call.param("part-number-marker") or "0", call.param("max-parts") or "1000"
    if not marker_text.isdigit() or not max_text.isdigit():
        raise S3Error("InvalidArgument", "part-number-marker and max-parts must be integers")
    after = [part for part in parts if part.number > int(marker_text)]
    shown, truncated = after[: int(max_text)], len(after) > int(max_text)
    children: list[tuple[str, Any]] = [
        ("Bucket", call.bucket_name),
        ("Key", call.key),
        ("UploadId", upload_id),
        ("PartNumberMarker", int(marker_text)),
        ("NextPartNumberMarker", shown[-1].number if shown else 0),
        ("MaxParts", int(max_text)),
        ("IsTruncated", truncated),
    ]
    children += [
        (
            "Part",
            [
                ("PartNumber", part.number),
                ("LastModified", xml_bodies.iso_time(part.mtime_ns / 1e9)),
                ("ETag", f'"{part.etag}"'),
                ("Size", part.size),
            ],
        )
        for part in shown
    ]
    return _xml("ListPartsResult", children)


# ----- routing ------------------------------------------------------------------------------------


def route(call: Call) -> Operation:
    """The operation a request names (``NotImplemented`` for the rest of the S3 API)."""
    method = call.request.method
    if not call.bucket_name:
        if method == "GET":
            return list_buckets
        raise _not_implemented(f"{method} /")
    if not call.key:
        if method == "HEAD":
            return head_bucket
        if method == "GET":
            if call.has("location"):
                return bucket_location
            return list_objects
        if method == "POST" and call.has("delete"):
            return delete_objects
        if method in ("PUT", "DELETE"):
            raise _not_implemented("creating or deleting buckets (each bucket is an export, served by its agents)")
        raise _not_implemented(f"{method} on a bucket")
    if method == "GET":
        return list_parts if call.has("uploadId") else get_object
    if method == "HEAD":
        return head_object
    if method == "PUT":
        if call.has("uploadId") or call.has("partNumber"):
            return upload_part
        return copy_object if call.header("x-amz-copy-source") is not None else put_object
    if method == "DELETE":
        return abort_upload if call.has("uploadId") else delete_object
    if method == "POST":
        if call.has("uploads"):
            return create_upload
        if call.has("uploadId"):
            return complete_upload
    raise _not_implemented(f"{method} on an object")


async def _authenticate(gateway: S3Gateway, request: Request) -> Call:
    arrived = _arrived(request)
    signature = parse_signature(arrived)
    settings = gateway.settings
    if signature.scope.region != settings.region or signature.scope.service != "s3":
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"the credential scope names region {signature.scope.region!r} and service {signature.scope.service!r}; "
            f"this gateway expects {settings.region!r} and 's3'",
            status=400,
        )
    check_time(arrived, signature, datetime.datetime.now(datetime.UTC), settings.max_clock_skew_s)
    holder = gateway.signing_keys.cached(signature.scope)
    if holder is None:
        holder = await run_in_threadpool(gateway.signing_keys.holder, signature.scope)
    check_signature(arrived, signature, holder.signing_key)
    gateway.note_holder(holder)
    bucket_name, _, key = arrived.path.lstrip("/").partition("/")
    return Call(request, arrived, signature, holder, bucket_name, key)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0")
    return request.headers.get("transfer-encoding") is not None or (length.isdigit() and int(length) > 0)


def create_app(gateway: S3Gateway) -> Starlette:
    """The gateway's ASGI app."""

    async def handle(request: Request) -> Response:
        request_id = secrets.token_hex(8)
        try:
            call = await _authenticate(gateway, request)
            response = await route(call)(gateway, call)
        except Exception as exc:
            error = s3_error_of(exc, bucket="")
            if error.code == "InternalError":
                log.exception("S3 %s %s failed", request.method, request.url.path)
            refusal = _error_response(error, request_id, request.method)
            if _has_body(request):
                # The body may be unread: on a kept-alive connection its bytes would be taken for the
                # next request. Closing is cheaper than reading a refused upload to its end.
                refusal.headers["connection"] = "close"
            return refusal
        response.headers["x-amz-request-id"] = request_id
        return response

    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", handle, methods=methods)])
