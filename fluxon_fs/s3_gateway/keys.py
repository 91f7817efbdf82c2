"""Object keys as export paths: one key is one path, and no key leaves its bucket.

A key is split by :func:`fluxon_core.relpath.split_relpath`, the rule every export path obeys
(``..`` and a leading ``/`` are refused), and must map to exactly one path: empty components
(``a//b``), ``.`` components and a trailing ``/`` on anything but a folder marker would alias
another key, so they are refused too. The agent then resolves the path fd by fd without following
a symlink out of the export. Names the gateway uses for its own staging files are not keys.
"""

from __future__ import annotations

from fluxon_core.relpath import split_relpath
from fluxon_fs.s3_gateway.errors import S3Error

MAX_KEY_BYTES = 1024
STAGING_PREFIX = ".fluxon-s3-"
"""Names of the gateway's uploads in progress (never listed, never addressable as keys)."""


def key_relpath(bucket: str, key: str) -> str:
    """The export-relative path of ``key``; a key that is not exactly one path inside the bucket is refused."""
    resource = f"/{bucket}/{key}"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", "Your key is too long", resource=resource)
    body = key[:-1] if key.endswith("/") else key
    try:
        parts = split_relpath(body)
    except PermissionError:
        raise S3Error("AccessDenied", "Access Denied: the key leaves the bucket", resource=resource) from None
    except (ValueError, TypeError):
        raise S3Error("InvalidArgument", "the key contains a NUL byte", resource=resource) from None
    if not body or "/".join(parts) != body:
        raise S3Error(
            "InvalidArgument",
            "keys with empty or '.' path components (or a leading '/') are not supported: each key is a file path",
            resource=resource,
        )
    if any(part.startswith(STAGING_PREFIX) for part in parts):
        raise S3Error("AccessDenied", f"names starting {STAGING_PREFIX!r} are the gateway's own", resource=resource)
    return body


def is_folder_key(key: str) -> bool:
    """A key ending in ``/``: a folder marker, stored as a directory."""
    return key.endswith("/")
