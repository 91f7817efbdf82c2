"""Errors as a local file system raises them: the right ``OSError`` subclass, errno and the user's path.

The export answers with export-relative paths; code on a mount must see the path it passed
(``FileNotFoundError(2, 'No such file or directory', '/mnt/x/a.txt')``). Failures that are not
file-system errors (network, timeouts) surface as ``OSError(EIO)``, which is what a network file
system gives, with the original error as the cause.
"""

from __future__ import annotations

import errno
import os
from typing import Any, NoReturn

UserPath = str | bytes
"""A path as the caller spelled it (``os.fspath`` of the argument)."""


def os_error(code: int, path: Any = None, path2: Any = None, message: str | None = None) -> OSError:
    """``OSError(code, strerror, path[, path2])``; Python picks the subclass (``FileNotFoundError`` …)."""
    text = message if message is not None else os.strerror(code)
    if path2 is not None:
        return OSError(code, text, path, None, path2)
    if path is not None:
        return OSError(code, text, path)
    return OSError(code, text)


def raise_with_user_path(exc: BaseException, path: Any, path2: Any = None) -> NoReturn:
    """Raise the error a local call on ``path`` would raise for ``exc`` raised by the export."""
    if isinstance(exc, OSError) and exc.errno is not None:
        # ApiError subclasses (PermissionDeniedError) carry their reason in ``message``, not strerror
        reason = exc.strerror or getattr(exc, "message", None) or None
        raise os_error(exc.errno, path, path2, reason) from None
    if isinstance(exc, PermissionError):
        raise os_error(errno.EACCES, path, path2, str(exc) or None) from None
    raise os_error(errno.EIO, path, path2, f"fluxon_fs remote call failed: {exc}") from exc


def not_supported(path: Any, what: str) -> OSError:
    """``OSError(ENOTSUP)`` for an operation a mount cannot offer (``os.open`` …)."""
    return os_error(errno.ENOTSUP, path, message=f"{os.strerror(errno.ENOTSUP)} on a fluxon_fs mount ({what})")


def cross_device(src: Any, dst: Any) -> OSError:
    """``OSError(EXDEV)`` for a rename between a mount and anything else, as across devices."""
    return os_error(errno.EXDEV, src, dst)
