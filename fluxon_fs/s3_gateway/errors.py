"""S3 errors: the code clients branch on, its HTTP status, and the mapping from Fluxon's own errors."""

from __future__ import annotations

import errno

from fluxon_core.errors import ApiError, ApiTimeoutError, InvalidArgumentError, NetworkError, PermissionDeniedError

STATUS_BY_CODE: dict[str, int] = {
    "AccessDenied": 403,
    "BadDigest": 400,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidObjectState": 403,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "MissingSecurityHeader": 400,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """A refusal the client receives as an S3 ``<Error>`` document with ``code`` and ``message``."""

    def __init__(self, code: str, message: str, *, status: int | None = None, resource: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE[code]
        self.resource = resource


def s3_error_of(exc: BaseException, *, bucket: str, key: str = "") -> S3Error:
    """The S3 error a failed export operation on ``bucket``/``key`` answers with.

    The agent's refusals keep their meaning: a scope refusal or a path that would leave the export
    is ``AccessDenied``, a missing file ``NoSuchKey``; an unreachable agent is ``ServiceUnavailable``.
    """
    resource = f"/{bucket}/{key}" if key else f"/{bucket}"
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, PermissionDeniedError | PermissionError):
        return S3Error("AccessDenied", "Access Denied", resource=resource)
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return S3Error("NoSuchKey", "The specified key does not exist.", resource=resource)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return S3Error("NoSuchKey", "The specified key does not exist.", resource=resource)
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return S3Error("AccessDenied", "Access Denied", resource=resource)
    if isinstance(exc, ApiTimeoutError | NetworkError):
        return S3Error("ServiceUnavailable", f"the export's agent did not answer: {exc}", resource=resource)
    if isinstance(exc, InvalidArgumentError | ValueError):
        return S3Error("InvalidArgument", str(exc), resource=resource)
    if isinstance(exc, OSError):
        return S3Error("InternalError", f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, '')})")
    if isinstance(exc, ApiError):
        return S3Error("InternalError", str(exc), resource=resource)
    return S3Error("InternalError", "We encountered an internal error. Please try again.", resource=resource)
