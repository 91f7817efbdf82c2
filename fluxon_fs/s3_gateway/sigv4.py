"""AWS Signature Version 4 as S3 uses it: the ``Authorization`` header form and presigned URLs.

Parsing (:func:`parse_signature`) refuses anything that is not a complete, current SigV4 signature
with the S3 error a client expects; checking (:func:`check_signature`) rebuilds the canonical
request from what arrived and compares HMACs in constant time. The signing key comes from the fs
master (:mod:`fluxon_fs.s3_gateway.credentials`): the gateway never holds a secret access key.

What the payload hash may be: the body's hex SHA-256 (checked as the body streams in),
``UNSIGNED-PAYLOAD``, or an ``aws-chunked`` body (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, whose every
chunk is signed, and ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``; see :mod:`fluxon_fs.s3_gateway.chunked`).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote

import attrs

from fluxon_fs.s3_gateway.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOADS = (STREAMING_SIGNED, STREAMING_UNSIGNED_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600
"""The longest a presigned URL may live (AWS's own limit)."""

_AMZ_DATE = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SPACES = re.compile(r" +")


@attrs.frozen
class ArrivedRequest:
    """What the signature covers, as the request arrived: method, decoded path, query pairs, headers.

    ``query`` holds the pairs in arrival order, percent-decoded; ``headers`` maps lower-case names to
    their values (repeated headers joined with ``,``).
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    raw_path: str = ""
    """The path exactly as sent (percent-encoded); "" when unknown."""
    raw_query: str = ""
    """The query string exactly as sent."""

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name``."""
        for key, value in self.query:
            if key == name:
                return value
        return None


@attrs.frozen
class CredentialScope:
    """``<access key>/<date>/<region>/<service>/aws4_request``."""

    access_key_id: str
    date: str
    region: str
    service: str

    @property
    def text(self) -> str:
        """The scope line of the string to sign (without the access key)."""
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@attrs.frozen
class Signature:
    """A parsed signature: who claims to sign, what, when, and the payload hash they declared."""

    scope: CredentialScope
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    payload_hash: str
    presigned: bool


def split_query(raw: bytes | str) -> tuple[tuple[str, str], ...]:
    """Query pairs percent-decoded (``+`` stays ``+``: SigV4 clients encode a space as ``%20``)."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return tuple(pairs)


def _uri_encode(text: str, *, keep_slash: bool) -> str:
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def canonical_request(
    request: ArrivedRequest, signed_headers: Sequence[str], payload_hash: str, *, as_sent: bool = False
) -> str:
    """The SigV4 canonical request (S3 flavour: the path is encoded once and never normalised).

    Clients derive the canonical path and query from the key and parameters with AWS's encoding
    rules; some sign the path and query exactly as they send them. ``as_sent`` builds the latter.
    """
    if as_sent:
        pairs = [part.partition("=") for part in request.raw_query.split("&") if part]
        query = sorted((name, value) for name, _, value in pairs if name != "X-Amz-Signature")
        path = request.raw_path
    else:
        query = sorted(
            (_uri_encode(name, keep_slash=False), _uri_encode(value, keep_slash=False))
            for name, value in request.query
            if name != "X-Amz-Signature"
        )
        path = _uri_encode(request.path, keep_slash=True)
    headers = "".join(f"{name}:{_SPACES.sub(' ', request.headers.get(name, '').strip())}\n" for name in signed_headers)
    return "\n".join(
        [
            request.method,
            path,
            "&".join(f"{name}={value}" for name, value in query),
            headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(signature: Signature, canonical: str) -> str:
    """The string the client signed."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{signature.amz_date}\n{signature.scope.text}\n{digest}"


def hmac_hex(key: bytes, text: str) -> str:
    """Hex HMAC-SHA256 of ``text`` under ``key``."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _missing(what: str) -> S3Error:
    return S3Error("AccessDenied", f"Request is not signed with AWS Signature Version 4: {what}")


def _parse_scope(credential: str) -> CredentialScope:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"credential must be <access key>/<YYYYMMDD>/<region>/s3/aws4_request, got {credential!r}",
            status=400,
        )
    return CredentialScope(parts[0], parts[1], parts[2], parts[3])


def _header_fields(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error(
            "InvalidRequest", f"unsupported authorization algorithm {algorithm!r}; only {ALGORITHM} is accepted"
        )
    fields = {}
    for item in rest.split(","):
        name, sep, field_value = item.strip().partition("=")
        if sep:
            fields[name] = field_value
    for name in ("Credential", "SignedHeaders", "Signature"):
        if name not in fields:
            raise S3Error("AuthorizationHeaderMalformed", f"the Authorization header has no {name}", status=400)
    return fields


def parse_signature(request: ArrivedRequest) -> Signature:
    """The request's SigV4 signature (header or presigned query); unsigned and malformed requests are refused."""
    header = request.headers.get("authorization")
    if header is not None:
        fields = _header_fields(header)
        amz_date = request.headers.get("x-amz-date", "")
        payload_hash = request.headers.get("x-amz-content-sha256")
        if payload_hash is None:
            raise S3Error("MissingSecurityHeader", "Your request was missing a required header: x-amz-content-sha256")
        presigned = False
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    elif request.query_value("X-Amz-Algorithm") is not None:
        if request.query_value("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error("InvalidRequest", f"unsupported X-Amz-Algorithm; only {ALGORITHM} is accepted")
        values = {
            name: request.query_value(name)
            for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Expires")
        }
        absent = [name for name, value in values.items() if value is None]
        if absent:
            raise S3Error("AuthorizationQueryParametersError", f"missing {', '.join(absent)}", status=400)
        credential = values["X-Amz-Credential"] or ""
        signed = values["X-Amz-SignedHeaders"] or ""
        signature = values["X-Amz-Signature"] or ""
        amz_date = values["X-Amz-Date"] or ""
        payload_hash = request.headers.get("x-amz-content-sha256", UNSIGNED_PAYLOAD)
        presigned = True
    else:
        raise _missing("neither an Authorization header nor X-Amz-* query parameters")
    scope = _parse_scope(credential)
    if not _AMZ_DATE.match(amz_date):
        raise _missing(f"x-amz-date must be YYYYMMDDTHHMMSSZ, got {amz_date!r}")
    if amz_date[:8] != scope.date:
        raise S3Error("SignatureDoesNotMatch", "the credential date does not match x-amz-date", resource=request.path)
    signed_headers = tuple(signed.split(";"))
    if "host" not in signed_headers or list(signed_headers) != sorted(set(signed_headers)):
        raise S3Error(
            "AuthorizationHeaderMalformed", "SignedHeaders must be sorted, unique and include host", status=400
        )
    if not presigned and "x-amz-content-sha256" not in signed_headers:
        raise S3Error("AuthorizationHeaderMalformed", "x-amz-content-sha256 must be a signed header", status=400)
    if not (
        payload_hash in (UNSIGNED_PAYLOAD, *STREAMING_PAYLOADS) or _HEX_SHA256.match(payload_hash or "") is not None
    ):
        raise S3Error("InvalidArgument", f"x-amz-content-sha256 {payload_hash!r} is not a SHA-256 or a known mode")
    if not re.fullmatch(r"[0-9a-f]{64}", signature):
        raise S3Error("SignatureDoesNotMatch", "the signature is not 64 hex digits", resource=request.path)
    return Signature(scope, signed_headers, signature, amz_date, payload_hash or UNSIGNED_PAYLOAD, presigned)


def parse_amz_date(amz_date: str) -> datetime.datetime:
    """``YYYYMMDDTHHMMSSZ`` as an aware UTC datetime."""
    return datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)


def check_time(request: ArrivedRequest, signature: Signature, now: datetime.datetime, max_skew_s: float) -> None:
    """Refuse a header signature made more than ``max_skew_s`` from ``now``, and an expired presigned URL."""
    signed_at = parse_amz_date(signature.amz_date)
    skew = (now - signed_at).total_seconds()
    if not signature.presigned:
        if abs(skew) > max_skew_s:
            raise S3Error(
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
            )
        return
    expires_text = request.query_value("X-Amz-Expires") or ""
    if not expires_text.isdigit() or not 1 <= int(expires_text) <= MAX_PRESIGNED_EXPIRES_S:
        raise S3Error(
            "AuthorizationQueryParametersError",
            f"X-Amz-Expires must be 1 to {MAX_PRESIGNED_EXPIRES_S} seconds",
            status=400,
        )
    if skew < -max_skew_s:
        raise S3Error("AccessDenied", "Request is not valid yet (X-Amz-Date is in the future)")
    if skew > int(expires_text):
        raise S3Error("AccessDenied", "Request has expired")


def check_signature(request: ArrivedRequest, signature: Signature, signing_key: bytes) -> None:
    """Raise ``SignatureDoesNotMatch`` unless ``signature`` is the request's, made with ``signing_key``."""
    canonicals = {canonical_request(request, signature.signed_headers, signature.payload_hash)}
    if request.raw_path:
        canonicals.add(canonical_request(request, signature.signed_headers, signature.payload_hash, as_sent=True))
    for canonical in canonicals:
        expected = hmac_hex(signing_key, string_to_sign(signature, canonical))
        if hmac.compare_digest(expected, signature.signature):
            return
    raise S3Error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        resource=request.path,
    )
