"""The S3 gateway with real clients (boto3, s3fs, a plain HTTP client) on a real stack, and the attacks it refuses."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import io
import os
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.poll import wait_until
from tests.support.s3_e2e import MIN_PART_BYTES, REGION, S3Stack, running_s3_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[S3Stack]:
    with running_s3_stack() as running:
        yield running


@pytest.fixture(scope="module")
def s3(stack: S3Stack) -> Any:
    return stack.client("admin")


def error_code(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


@attrs.frozen
class Answer:
    status_code: int
    content: bytes
    sent_headers: dict[str, str]


def signed(
    stack: S3Stack, method: str, path: str, *, username: str = "admin", body: bytes = b"", **headers: str
) -> Answer:
    """Send a request signed by botocore's own SigV4 signer, with the path exactly as given (no dot-segment
    normalisation, which HTTP client libraries apply)."""
    key = stack.keys.get(username) or stack.keys.setdefault(username, stack.new_key(username))
    request = AWSRequest(method=method, url=stack.url + path, data=body, headers=headers)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(key.record.access_key_id, key.secret_access_key), "s3", REGION).add_auth(request)
    sent = dict(request.headers.items())
    host, port = stack.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, response.read(), sent)
    finally:
        connection.close()


# ----- objects --------------------------------------------------------------------------------------


def test_put_get_head_delete_round_trip_lands_in_the_export(stack: S3Stack, s3: Any) -> None:
    put = s3.put_object(Bucket="demo", Key="rt/hello.txt", Body=b"hello gateway")
    assert (stack.exports["demo"] / "rt" / "hello.txt").read_bytes() == b"hello gateway"
    got = s3.get_object(Bucket="demo", Key="rt/hello.txt")
    assert got["Body"].read() == b"hello gateway" and got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket="demo", Key="rt/hello.txt")
    assert head["ContentLength"] == 13 and head["ETag"] == put["ETag"]
    (stack.exports["demo"] / "rt" / "written-by-others.bin").write_bytes(b"x" * 3000)
    assert s3.get_object(Bucket="demo", Key="rt/written-by-others.bin")["Body"].read() == b"x" * 3000
    s3.delete_object(Bucket="demo", Key="rt/hello.txt")
    assert not (stack.exports["demo"] / "rt" / "hello.txt").exists()
    assert error_code(lambda: s3.get_object(Bucket="demo", Key="rt/hello.txt")) == "NoSuchKey"
    assert error_code(lambda: s3.head_object(Bucket="demo", Key="rt/hello.txt")) == "404"
    s3.delete_object(Bucket="demo", Key="rt/hello.txt")  # deleting a missing key succeeds, as in S3
    assert error_code(lambda: s3.get_object(Bucket="nope", Key="x")) == "NoSuchBucket"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["demo", "other"]
    s3.head_bucket(Bucket="demo")


def test_keys_with_spaces_plus_signs_and_unicode_round_trip(stack: S3Stack, s3: Any) -> None:
    keys = ["odd/with space.txt", "odd/a+b=c&d.txt", "odd/été 100%.txt", "odd/~tilde;semi,comma"]
    for key in keys:
        s3.put_object(Bucket="demo", Key=key, Body=key.encode())
    assert sorted(p.name for p in (stack.exports["demo"] / "odd").iterdir()) == sorted(k[4:] for k in keys)
    assert [c["Key"] for c in s3.list_objects_v2(Bucket="demo", Prefix="odd/")["Contents"]] == sorted(keys)
    for key in keys:
        assert s3.get_object(Bucket="demo", Key=key)["Body"].read() == key.encode()
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": keys[2]}, ExpiresIn=60)
    assert httpx.get(url).content == keys[2].encode()


def test_listings_page_group_by_delimiter_and_resume(stack: S3Stack, s3: Any) -> None:
    root = stack.exports["other"] / "lst"
    names = ["a.txt", "a-b.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "d.txt", "e/f.txt"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    (root / "empty").mkdir()
    expected = sorted(f"lst/{n}" for n in [*names, "empty/"])
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket="other", Prefix="lst/", PaginationConfig={"PageSize": 2})
    )
    assert len(pages) == 4 and all(p["KeyCount"] <= 2 for p in pages)
    assert [item["Key"] for page in pages for item in page.get("Contents", [])] == expected
    grouped = s3.list_objects_v2(Bucket="other", Prefix="lst/", Delimiter="/")
    assert [c["Key"] for c in grouped["Contents"]] == ["lst/a-b.txt", "lst/a.txt", "lst/d.txt"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["lst/b/", "lst/e/", "lst/empty/"]
    paged = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket="other", Prefix="lst/", Delimiter="/", PaginationConfig={"PageSize": 2}
        )
    )
    seen = [c["Key"] for p in paged for c in p.get("Contents", [])] + [
        c["Prefix"] for p in paged for c in p.get("CommonPrefixes", [])
    ]
    assert sorted(seen) == sorted(["lst/a-b.txt", "lst/a.txt", "lst/d.txt", "lst/b/", "lst/e/", "lst/empty/"])
    after = s3.list_objects_v2(Bucket="other", Prefix="lst/", StartAfter="lst/b/1.txt")
    assert [c["Key"] for c in after["Contents"]] == [k for k in expected if k > "lst/b/1.txt"]
    partial = s3.list_objects_v2(Bucket="other", Prefix="lst/a")
    assert [c["Key"] for c in partial["Contents"]] == ["lst/a-b.txt", "lst/a.txt"]
    dashed = s3.list_objects_v2(Bucket="other", Prefix="lst/", Delimiter=".")
    assert [p["Prefix"] for p in dashed["CommonPrefixes"]] == [
        "lst/a-b.",
        "lst/a.",
        "lst/b/1.",
        "lst/b/2.",
        "lst/b/c/3.",
        "lst/d.",
        "lst/e/f.",
    ]
    v1 = s3.list_objects(Bucket="other", Prefix="lst/", MaxKeys=3)
    assert v1["IsTruncated"] and [c["Key"] for c in v1["Contents"]] == expected[:3]


def test_ranges_and_conditional_gets(stack: S3Stack, s3: Any) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    etag = s3.put_object(Bucket="demo", Key="cond/blob.bin", Body=data)["ETag"]
    part = s3.get_object(Bucket="demo", Key="cond/blob.bin", Range="bytes=1048570-2097160")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == f"bytes 1048570-2097160/{len(data)}"
    assert part["Body"].read() == data[1048570:2097161]
    assert s3.get_object(Bucket="demo", Key="cond/blob.bin", Range="bytes=-10")["Body"].read() == data[-10:]
    assert s3.get_object(Bucket="demo", Key="cond/blob.bin", Range="bytes=3145720-")["Body"].read() == data[3145720:]
    assert (
        error_code(lambda: s3.get_object(Bucket="demo", Key="cond/blob.bin", Range=f"bytes={len(data)}-"))
        == "InvalidRange"
    )
    assert s3.get_object(Bucket="demo", Key="cond/blob.bin")["Body"].read() == data
    assert s3.get_object(Bucket="demo", Key="cond/blob.bin", IfMatch=etag)["ContentLength"] == len(data)
    assert (
        error_code(lambda: s3.get_object(Bucket="demo", Key="cond/blob.bin", IfMatch='"other"')) == "PreconditionFailed"
    )
    assert error_code(lambda: s3.get_object(Bucket="demo", Key="cond/blob.bin", IfNoneMatch=etag)) == "304"
    assert s3.get_object(Bucket="demo", Key="cond/blob.bin", IfNoneMatch='"other"')["ContentLength"] == len(data)
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    assert error_code(lambda: s3.get_object(Bucket="demo", Key="cond/blob.bin", IfModifiedSince=future)) == "304"
    assert s3.get_object(Bucket="demo", Key="cond/blob.bin", IfModifiedSince=past)["ContentLength"] == len(data)
    assert (
        error_code(lambda: s3.get_object(Bucket="demo", Key="cond/blob.bin", IfUnmodifiedSince=past))
        == "PreconditionFailed"
    )


def test_copy_and_delete_objects(stack: S3Stack, s3: Any) -> None:
    s3.put_object(Bucket="demo", Key="cp/src.bin", Body=b"copy me" * 1000)
    result = s3.copy_object(Bucket="other", Key="cp/dst.bin", CopySource={"Bucket": "demo", "Key": "cp/src.bin"})
    assert result["CopyObjectResult"]["ETag"] == s3.head_object(Bucket="other", Key="cp/dst.bin")["ETag"]
    assert (stack.exports["other"] / "cp" / "dst.bin").read_bytes() == b"copy me" * 1000
    for name in ("x1", "x2", "x3"):
        s3.put_object(Bucket="demo", Key=f"del/{name}", Body=name.encode())
    answer = s3.delete_objects(
        Bucket="demo", Delete={"Objects": [{"Key": "del/x1"}, {"Key": "del/x2"}, {"Key": "del/../../escape"}]}
    )
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["del/x1", "del/x2"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("del/../../escape", "AccessDenied")]
    assert sorted(p.name for p in (stack.exports["demo"] / "del").iterdir()) == ["x3"]


def test_multipart_upload_above_the_part_size(stack: S3Stack, s3: Any) -> None:
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(3 * MIN_PART_BYTES + 12345)
    config = TransferConfig(multipart_threshold=MIN_PART_BYTES, multipart_chunksize=MIN_PART_BYTES)
    s3.upload_fileobj(io.BytesIO(data), "demo", "mp/big.bin", Config=config)
    assert (stack.exports["demo"] / "mp" / "big.bin").read_bytes() == data
    assert s3.get_object(Bucket="demo", Key="mp/big.bin")["Body"].read() == data
    assert not [p for p in (stack.exports["demo"] / "mp").iterdir() if p.name != "big.bin"], "staging files remain"

    upload = s3.create_multipart_upload(Bucket="demo", Key="mp/manual.bin")["UploadId"]
    first = s3.upload_part(
        Bucket="demo", Key="mp/manual.bin", UploadId=upload, PartNumber=1, Body=data[:MIN_PART_BYTES]
    )
    assert error_code(lambda: s3.head_object(Bucket="demo", Key="mp/manual.bin")) == "404", "a half upload is visible"
    assert [p["Key"] for p in s3.list_objects_v2(Bucket="demo", Prefix="mp/")["Contents"]] == ["mp/big.bin"]
    second = s3.upload_part(Bucket="demo", Key="mp/manual.bin", UploadId=upload, PartNumber=2, Body=b"tail")
    parts = s3.list_parts(Bucket="demo", Key="mp/manual.bin", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
        (1, first["ETag"], MIN_PART_BYTES),
        (2, second["ETag"], 4),
    ]
    wrong = {"Parts": [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": '"0000"'}]}
    assert (
        error_code(
            lambda: s3.complete_multipart_upload(
                Bucket="demo", Key="mp/manual.bin", UploadId=upload, MultipartUpload=wrong
            )
        )
        == "InvalidPart"
    )
    done = {"Parts": [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]}
    s3.complete_multipart_upload(Bucket="demo", Key="mp/manual.bin", UploadId=upload, MultipartUpload=done)
    assert s3.get_object(Bucket="demo", Key="mp/manual.bin")["Body"].read() == data[:MIN_PART_BYTES] + b"tail"
    assert error_code(lambda: s3.list_parts(Bucket="demo", Key="mp/manual.bin", UploadId=upload)) == "NoSuchUpload"

    small = s3.create_multipart_upload(Bucket="demo", Key="mp/small.bin")["UploadId"]
    tiny = [s3.upload_part(Bucket="demo", Key="mp/small.bin", UploadId=small, PartNumber=n, Body=b"ab") for n in (1, 2)]
    listed = {"Parts": [{"PartNumber": n + 1, "ETag": p["ETag"]} for n, p in enumerate(tiny)]}
    assert (
        error_code(
            lambda: s3.complete_multipart_upload(
                Bucket="demo", Key="mp/small.bin", UploadId=small, MultipartUpload=listed
            )
        )
        == "EntityTooSmall"
    )
    s3.abort_multipart_upload(Bucket="demo", Key="mp/small.bin", UploadId=small)
    assert (
        error_code(lambda: s3.abort_multipart_upload(Bucket="demo", Key="mp/small.bin", UploadId=small))
        == "NoSuchUpload"
    )
    assert sorted(p.name for p in (stack.exports["demo"] / "mp").iterdir()) == ["big.bin", "manual.bin"]


def test_presigned_get_url_works_with_a_plain_http_client(stack: S3Stack, s3: Any) -> None:
    s3.put_object(Bucket="demo", Key="pre/shared.txt", Body=b"shared by url")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "pre/shared.txt"}, ExpiresIn=60)
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"shared by url"
    tampered = url.replace("pre/shared.txt", "pre/other.txt")
    refused = httpx.get(tampered)
    assert refused.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in refused.content
    stretched = httpx.get(url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"))
    assert b"<Code>SignatureDoesNotMatch</Code>" in stretched.content


def test_s3fs_reads_writes_and_lists(stack: S3Stack) -> None:
    import s3fs

    key = stack.keys.get("admin") or stack.keys.setdefault("admin", stack.new_key("admin"))
    fs = s3fs.S3FileSystem(
        key=key.record.access_key_id,
        secret=key.secret_access_key,
        client_kwargs={"endpoint_url": stack.url, "region_name": REGION},
        config_kwargs={"s3": {"addressing_style": "path"}},
        skip_instance_cache=True,
    )
    fs.pipe("demo/s3fs/one.txt", b"one")
    with fs.open("demo/s3fs/deep/two.bin", "wb", block_size=5 * 1024 * 1024) as file:
        file.write(b"2" * (6 * 1024 * 1024))
    assert fs.cat("demo/s3fs/one.txt") == b"one"
    assert fs.cat_file("demo/s3fs/deep/two.bin", start=10, end=20) == b"2" * 10
    assert sorted(fs.ls("demo/s3fs", detail=False)) == ["demo/s3fs/deep", "demo/s3fs/one.txt"]
    assert sorted(fs.find("demo/s3fs")) == ["demo/s3fs/deep/two.bin", "demo/s3fs/one.txt"]
    assert fs.info("demo/s3fs/deep/two.bin")["size"] == 6 * 1024 * 1024
    fs.rm("demo/s3fs/one.txt")
    assert not (stack.exports["demo"] / "s3fs" / "one.txt").exists()


def test_gateway_reads_share_the_host_pool_and_reach_the_panels_cache_figures(stack: S3Stack, s3: Any) -> None:
    base = stack.fs.master_ready.fields["panel"]  # type: ignore[union-attr]
    login = httpx.post(f"{base}/api/login", json={"username": "admin", "password": "admin-pw"}, timeout=15)
    assert login.status_code == 200, login.text

    def figures() -> tuple[int, int]:
        reply = httpx.get(
            f"{base}/api/overview", headers={"Authorization": f"Bearer {login.json()['token']}"}, timeout=15
        )
        other = next(export for export in reply.json()["exports"] if export["name"] == "other")
        return other["cache_hits"], other["cache_misses"]

    data = os.urandom(2 * 1024 * 1024)
    (stack.exports["other"] / "counted.bin").write_bytes(data)
    hits, misses = figures()
    assert s3.get_object(Bucket="other", Key="counted.bin")["Body"].read() == data  # cold: 2 pieces from the agent
    wait_until(lambda: figures() == (hits, misses + 2), 10, "the gateway's misses in the panel")
    assert s3.get_object(Bucket="other", Key="counted.bin")["Body"].read() == data  # warm: from the pool
    wait_until(lambda: figures() == (hits + 2, misses + 2), 10, "the gateway's hits in the panel")


def test_operations_outside_the_supported_set_answer_not_implemented(s3: Any) -> None:
    assert error_code(lambda: s3.create_bucket(Bucket="newbucket")) == "NotImplemented"
    assert error_code(lambda: s3.get_object_tagging(Bucket="demo", Key="x")) == "NotImplemented"
    assert error_code(lambda: s3.get_bucket_versioning(Bucket="demo")) == "NotImplemented"


# ----- attacks ----------------------------------------------------------------------------------------


def test_unsigned_and_malformed_requests_are_refused(stack: S3Stack) -> None:
    (stack.exports["demo"] / "secret.txt").write_bytes(b"top secret")
    unsigned = httpx.get(f"{stack.url}/demo/secret.txt")
    assert unsigned.status_code == 403 and b"<Code>AccessDenied</Code>" in unsigned.content
    assert b"top secret" not in unsigned.content
    listing = httpx.get(f"{stack.url}/demo?list-type=2")
    assert listing.status_code == 403 and b"secret.txt" not in listing.content
    no_hash = signed(stack, "GET", "/demo/secret.txt")
    assert no_hash.status_code == 200
    headers = {"Authorization": no_hash.sent_headers["Authorization"], "x-amz-date": no_hash.sent_headers["X-Amz-Date"]}
    missing = httpx.get(f"{stack.url}/demo/secret.txt", headers=headers)
    assert b"<Code>MissingSecurityHeader</Code>" in missing.content and missing.status_code == 400


def test_a_wrong_signature_and_a_wrong_secret_are_refused(stack: S3Stack) -> None:
    (stack.exports["demo"] / "sig.txt").write_bytes(b"signed content")
    good = signed(stack, "GET", "/demo/sig.txt")
    assert good.status_code == 200 and good.content == b"signed content"
    forged = dict(good.sent_headers)
    forged["Authorization"] = forged["Authorization"][:-4] + (
        "1111" if forged["Authorization"].endswith("0000") else "0000"
    )
    refused = httpx.get(f"{stack.url}/demo/sig.txt", headers=forged)
    assert refused.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in refused.content
    key = stack.keys["admin"]
    import boto3
    from botocore.config import Config

    impostor = boto3.client(
        "s3",
        endpoint_url=stack.url,
        region_name=REGION,
        aws_access_key_id=key.record.access_key_id,
        aws_secret_access_key="not-the-secret",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    assert error_code(lambda: impostor.get_object(Bucket="demo", Key="sig.txt")) == "SignatureDoesNotMatch"
    unknown = boto3.client(
        "s3",
        endpoint_url=stack.url,
        region_name=REGION,
        aws_access_key_id="FXAAAAAAAAAAAAAAAAAA",
        aws_secret_access_key="x",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    assert error_code(lambda: unknown.list_buckets()) == "InvalidAccessKeyId"


def test_a_revoked_key_stops_working_within_the_revocation_bound(stack: S3Stack) -> None:
    key = stack.new_key("admin")
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=stack.url,
        region_name=REGION,
        aws_access_key_id=key.record.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["demo", "other"]
    with stack.access_store() as store:
        store.revoke_access_key(key.record.access_key_id)

    def refused() -> bool:
        try:
            client.list_buckets()
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "InvalidAccessKeyId"
        return False

    wait_until(refused, timeout_s=10, message="the revoked key is refused")


def test_an_out_of_scope_key_is_refused_by_the_users_scopes(stack: S3Stack) -> None:
    (stack.exports["demo"] / "public").mkdir(exist_ok=True)
    (stack.exports["demo"] / "public" / "readme.txt").write_bytes(b"for everyone")
    (stack.exports["demo"] / "private.txt").write_bytes(b"admins only")
    bob = stack.client("bob")
    assert bob.get_object(Bucket="demo", Key="public/readme.txt")["Body"].read() == b"for everyone"
    assert [b["Name"] for b in bob.list_buckets()["Buckets"]] == ["demo"]
    assert error_code(lambda: bob.get_object(Bucket="demo", Key="private.txt")) == "AccessDenied"
    assert error_code(lambda: bob.put_object(Bucket="demo", Key="public/new.txt", Body=b"x")) == "AccessDenied"
    assert error_code(lambda: bob.list_objects_v2(Bucket="other")) == "AccessDenied"
    assert error_code(lambda: bob.head_bucket(Bucket="other")) == "403"
    assert error_code(lambda: bob.delete_object(Bucket="demo", Key="private.txt")) == "AccessDenied"
    assert (stack.exports["demo"] / "private.txt").exists()
    seen = [c["Key"] for c in bob.list_objects_v2(Bucket="demo").get("Contents", [])]
    assert "private.txt" not in seen and "public/readme.txt" in seen
    alice = stack.client("alice")
    alice.put_object(Bucket="demo", Key="team/alice.txt", Body=b"alice's")
    assert error_code(lambda: alice.put_object(Bucket="demo", Key="elsewhere.txt", Body=b"x")) == "AccessDenied"
    assert (
        error_code(
            lambda: alice.copy_object(
                Bucket="demo", Key="team/stolen.txt", CopySource={"Bucket": "demo", "Key": "private.txt"}
            )
        )
        == "AccessDenied"
    )


def test_keys_cannot_climb_out_of_the_bucket_or_follow_a_symlink_out(stack: S3Stack, s3: Any, tmp_path) -> None:
    outside = stack.fs.root / "outside-secret.txt"
    outside.write_bytes(b"outside the export")
    (stack.exports["demo"] / "link-out").symlink_to(outside)
    (stack.exports["demo"] / "dir-out").symlink_to(stack.fs.root)
    for path in ("/demo/../outside-secret.txt", "/demo/%2E%2E/outside-secret.txt", "/demo/a/../../outside-secret.txt"):
        answer = signed(stack, "GET", path)
        assert answer.status_code in (403, 400), (path, answer.status_code)
        assert b"outside the export" not in answer.content
    for key in ("link-out", "dir-out/outside-secret.txt"):
        code = error_code(lambda key=key: s3.get_object(Bucket="demo", Key=key))
        assert code in ("AccessDenied", "NoSuchKey"), (key, code)
    assert error_code(lambda: s3.put_object(Bucket="demo", Key="dir-out/planted.txt", Body=b"x")) in (
        "AccessDenied",
        "NoSuchKey",
    )
    assert not (stack.fs.root / "planted.txt").exists()
    listed = [c["Key"] for c in s3.list_objects_v2(Bucket="demo").get("Contents", [])]
    assert "link-out" not in listed and not any(k.startswith("dir-out") for k in listed)
    assert error_code(lambda: s3.get_object(Bucket="demo", Key=".fluxon-s3-0123.tmp")) == "AccessDenied"


def test_a_gateway_config_names_what_is_wrong(tmp_path) -> None:
    from fluxon_core.config import ConfigError, load_config
    from fluxon_core.errors import InvalidArgumentError
    from fluxon_fs.config import FsRoleConfig
    from fluxon_fs.s3_gateway.gateway import S3Gateway

    base = {"master": {"instance_key": "fs-master"}, "service_secret_file": str(tmp_path / "missing.secret")}
    with pytest.raises(InvalidArgumentError, match=r"fluxon_fs\.s3_gateway is required"):
        S3Gateway(load_config(FsRoleConfig, {"fluxon_fs": base}), tmp_path)
    with pytest.raises(InvalidArgumentError, match="service_secret_file"):
        S3Gateway(load_config(FsRoleConfig, {"fluxon_fs": {**base, "s3_gateway": {}}}), tmp_path)
    with pytest.raises(ConfigError, match=r"fluxon_fs\.s3_gateway\.listen_addr"):
        load_config(FsRoleConfig, {"fluxon_fs": {**base, "s3_gateway": {"listen_addr": "nowhere"}}})
    with pytest.raises(ConfigError, match=r"fluxon_fs\.s3_gateway\.max_parts"):
        load_config(FsRoleConfig, {"fluxon_fs": {**base, "s3_gateway": {"max_parts": 0}}})


def test_a_second_gateway_on_a_taken_address_fails_naming_its_setting(stack: S3Stack) -> None:
    from fluxon_core.runtime.readiness import RoleStartError
    from fluxon_fs.roles import start_s3_gateway_process
    from tests.support.s3_e2e import gateway_config

    taken = stack.url.removeprefix("http://")
    config = gateway_config(stack.fs, listen_addr=taken)
    config["kvclient"]["instance_key"] = "s3-gateway-2"
    second = start_s3_gateway_process(config, workdir=stack.fs.root / "s3-gateway-2")
    try:
        with pytest.raises(RoleStartError, match=r"fluxon_fs\.s3_gateway cannot bind listen_addr"):
            second.wait_ready(60)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
