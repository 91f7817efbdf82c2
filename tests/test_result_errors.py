"""Result and the ApiError hierarchy behave as KV.md §3 promises."""

import pytest

from fluxon_core.errors import ERROR_CLASSES_BY_CODE, KeyNotFoundError, StoreInitFailedError
from fluxon_core.result import Result, UnwrapError


def test_ok_result_unwraps_to_value():
    result = Result.ok(41)
    assert result.is_ok() and not result.is_err()
    assert result.unwrap("never") == 41


def test_error_unwrap_names_message_and_typed_error():
    result = Result.err(StoreInitFailedError("no owner at /dev/shm/x"))
    with pytest.raises(UnwrapError) as info:
        result.unwrap("new_store failed")
    assert str(info.value).startswith("new_store failed: StoreInitFailedError: no owner at /dev/shm/x")
    assert isinstance(info.value.__cause__, StoreInitFailedError)
    assert isinstance(result.unwrap_error(), StoreInitFailedError)


def test_unwrap_error_on_ok_raises():
    with pytest.raises(UnwrapError):
        Result.ok(1).unwrap_error("expected failure")


def test_err_rejects_non_api_errors():
    with pytest.raises(TypeError):
        Result.err(ValueError("x"))  # type: ignore[arg-type]


def test_every_error_code_is_unique_and_maps_back():
    for code, cls in ERROR_CLASSES_BY_CODE.items():
        assert cls.code == code
    assert ERROR_CLASSES_BY_CODE["key_not_found"] is KeyNotFoundError
