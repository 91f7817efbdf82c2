"""SigV4 checking against botocore's own signer, and signed request bodies (plain and aws-chunked)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import zlib
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fluxon_core.access.access_keys import sigv4_signing_key
from fluxon_fs.s3_gateway.chunked import ChunkedBody, PlainBody, body_decoder
from fluxon_fs.s3_gateway.errors import S3Error
from fluxon_fs.s3_gateway.sigv4 import (
    EMPTY_SHA256,
    STREAMING_SIGNED,
    ArrivedRequest,
    CredentialScope,
    Signature,
    check_signature,
    check_time,
    parse_signature,
    split_query,
)

KEY_ID = "FXTESTTESTTESTTEST01"
SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-abcd"
REGION = "us-east-1"


def arrived(request: AWSRequest) -> ArrivedRequest:
    """What the gateway sees of a request botocore prepared (the path decoded, the query split)."""
    url = urlsplit(request.url)
    from urllib.parse import unquote

    headers = {name.lower(): str(value) for name, value in request.headers.items()}
    headers.setdefault("host", url.netloc)
    return ArrivedRequest(
        request.method, unquote(url.path), split_query(url.query), headers, raw_path=url.path, raw_query=url.query
    )


def signing_key(date: str) -> bytes:
    return sigv4_signing_key(SECRET, date, REGION, "s3")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "http://127.0.0.1:19000/demo/plain.txt"),
        ("GET", "http://127.0.0.1:19000/demo/with%20space/and+plus/%C3%A9t%C3%A9~x.txt"),
        ("GET", "http://127.0.0.1:19000/demo?list-type=2&prefix=a%2Fb%20c&delimiter=%2F&max-keys=2"),
        ("PUT", "http://127.0.0.1:19000/demo/k?partNumber=3&uploadId=abc"),
        ("POST", "http://127.0.0.1:19000/demo?delete"),
    ],
)
def test_header_signatures_made_by_botocore_verify_and_any_change_is_refused(method: str, url: str) -> None:
    body = b"<Delete/>" if method == "POST" else b""
    request = AWSRequest(method=method, url=url, data=body, headers={"x-amz-meta-note": "  two  spaces "})
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(KEY_ID, SECRET), "s3", REGION).add_auth(request)
    seen = arrived(request)
    signature = parse_signature(seen)
    assert signature.scope.access_key_id == KEY_ID and not signature.presigned
    check_signature(seen, signature, signing_key(signature.scope.date))
    check_time(seen, signature, datetime.datetime.now(datetime.UTC), 900)
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
        check_signature(attrs_evolve_path(seen, seen.path + "x"), signature, signing_key(signature.scope.date))
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
        check_signature(seen, signature, sigv4_signing_key("other", signature.scope.date, REGION, "s3"))
    with pytest.raises(S3Error, match="RequestTimeTooSkewed"):
        check_time(seen, signature, datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=20), 900)


def attrs_evolve_path(request: ArrivedRequest, path: str) -> ArrivedRequest:
    return ArrivedRequest(request.method, path, request.query, request.headers, path, request.raw_query)


def test_presigned_urls_from_botocore_verify_until_they_expire() -> None:
    request = AWSRequest(method="GET", url="http://127.0.0.1:19000/demo/shared.bin")
    S3SigV4QueryAuth(Credentials(KEY_ID, SECRET), "s3", REGION, expires=60).add_auth(request)
    seen = arrived(request)
    signature = parse_signature(seen)
    assert signature.presigned
    check_signature(seen, signature, signing_key(signature.scope.date))
    now = datetime.datetime.now(datetime.UTC)
    check_time(seen, signature, now, 900)
    with pytest.raises(S3Error, match="expired"):
        check_time(seen, signature, now + datetime.timedelta(seconds=120), 900)


def test_unsigned_and_incomplete_signatures_are_refused_with_their_codes() -> None:
    bare = ArrivedRequest("GET", "/demo/x", (), {"host": "h"})
    with pytest.raises(S3Error) as caught:
        parse_signature(bare)
    assert caught.value.code == "AccessDenied"
    request = AWSRequest(method="GET", url="http://h/demo/x")
    request.headers["x-amz-content-sha256"] = EMPTY_SHA256
    S3SigV4Auth(Credentials(KEY_ID, SECRET), "s3", REGION).add_auth(request)
    headers = {k: v for k, v in arrived(request).headers.items() if k != "x-amz-content-sha256"}
    with pytest.raises(S3Error) as caught:
        parse_signature(ArrivedRequest("GET", "/demo/x", (), headers))
    assert caught.value.code == "MissingSecurityHeader"


# ----- bodies ----------------------------------------------------------------------------------------


def _signature(seed: str) -> Signature:
    return Signature(
        CredentialScope(KEY_ID, "20260105", REGION, "s3"), ("host",), seed, "20260105T120000Z", STREAMING_SIGNED, False
    )


def _signed_chunks(payload_chunks: list[bytes], seed: str, key: bytes) -> bytes:
    """An aws-chunked body as the AWS documentation describes it (written independently of the gateway)."""
    previous, out = seed, b""
    for chunk in [*payload_chunks, b""]:
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                "20260105T120000Z",
                f"20260105/{REGION}/s3/aws4_request",
                previous,
                hashlib.sha256(b"").hexdigest(),
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    return out


def _feed(decoder, body: bytes, step: int) -> bytes:
    out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
    decoder.finish()
    return out


@pytest.mark.parametrize("step", [1, 7, 65536])
def test_signed_chunks_decode_whatever_the_network_cuts(step: int) -> None:
    key, seed = signing_key("20260105"), "a" * 64
    chunks = [b"x" * 70000, b"hello", b"y" * 3]
    body = _signed_chunks(chunks, seed, key)
    assert _feed(ChunkedBody(_signature(seed), key, None), body, step) == b"".join(chunks)


def test_a_changed_chunk_or_a_cut_body_is_refused() -> None:
    key, seed = signing_key("20260105"), "b" * 64
    body = _signed_chunks([b"abcdef", b"ghij"], seed, key)
    tampered = body.replace(b"ghij", b"ghiJ")
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
        _feed(ChunkedBody(_signature(seed), key, None), tampered, 5)
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
        _feed(ChunkedBody(_signature("c" * 64), key, None), body, 5)  # another request's seed
    with pytest.raises(S3Error, match="IncompleteBody"):
        _feed(ChunkedBody(_signature(seed), key, None), body[:-20], 5)


def test_unsigned_chunks_with_a_checksum_trailer() -> None:
    payload = b"trailer checked" * 1000
    crc = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    body = f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\nx-amz-checksum-crc32:" + crc.encode() + b"\r\n\r\n"
    assert _feed(ChunkedBody(_signature("d" * 64), None, "x-amz-checksum-crc32"), body, 1000) == payload
    wrong = body.replace(crc.encode(), b"AAAAAA==")
    with pytest.raises(S3Error, match="BadDigest"):
        _feed(ChunkedBody(_signature("d" * 64), None, "x-amz-checksum-crc32"), wrong, 1000)


def test_a_plain_body_must_have_the_signed_hash_unless_unsigned() -> None:
    assert _feed(PlainBody(hashlib.sha256(b"abc").hexdigest()), b"abc", 1) == b"abc"
    with pytest.raises(S3Error, match="XAmzContentSHA256Mismatch"):
        _feed(PlainBody(hashlib.sha256(b"abc").hexdigest()), b"abd", 1)
    unsigned = Signature(
        CredentialScope(KEY_ID, "20260105", REGION, "s3"),
        ("host",),
        "e" * 64,
        "20260105T120000Z",
        "UNSIGNED-PAYLOAD",
        False,
    )
    assert _feed(body_decoder(unsigned, b"k", {}), b"anything", 3) == b"anything"


def test_a_checksum_header_must_match_the_body() -> None:
    signature = Signature(
        CredentialScope(KEY_ID, "20260105", REGION, "s3"),
        ("host",),
        "f" * 64,
        "20260105T120000Z",
        "UNSIGNED-PAYLOAD",
        False,
    )
    payload = b"checked by crc32"
    crc = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    assert _feed(body_decoder(signature, b"k", {"x-amz-checksum-crc32": crc}), payload, 4) == payload
    with pytest.raises(S3Error, match="BadDigest"):
        _feed(body_decoder(signature, b"k", {"x-amz-checksum-crc32": "AAAAAA=="}), payload, 4)
    sha = base64.b64encode(hashlib.sha256(payload).digest()).decode()
    assert _feed(body_decoder(signature, b"k", {"x-amz-checksum-sha256": sha}), payload, 5) == payload
