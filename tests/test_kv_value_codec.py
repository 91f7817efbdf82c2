"""The flat value dict <-> blob codec: round trips, zero-copy bytes fields, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.kv.value_codec import decode_value, encode_value, encoded_size

values = st.dictionaries(
    st.text(max_size=20),
    st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False),
        st.booleans(),
        st.text(max_size=50),
        st.binary(max_size=200),
    ),
    max_size=12,
)


@given(values)
def test_round_trip(value):
    blob = b"".join(bytes(p) for p in encode_value(value))
    decoded = decode_value(blob)
    assert list(decoded) == list(value)
    for name, item in value.items():
        got = decoded[name]
        if isinstance(item, bytes):
            assert isinstance(got, memoryview) and got.readonly and bytes(got) == item
        else:
            assert type(got) is type(item) and got == item


def test_bytes_fields_are_views_of_the_blob_not_copies():
    payload = bytes(range(256)) * 1000
    parts = encode_value({"n": 1, "data": payload})
    assert parts[1].obj is payload  # encoding does not copy the bytes either
    blob = bytearray(b"".join(bytes(p) for p in parts))
    decoded = decode_value(blob)
    view = decoded["data"]
    assert view.nbytes == len(payload) == encoded_size(parts) - len(parts[0])
    blob[-1] ^= 0xFF  # a change in the underlying buffer is visible through the view
    assert view[-1] == payload[-1] ^ 0xFF


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ({"a": [1]}, r"field 'a' has type list"),
        ({"a": {"b": 1}}, r"field 'a' has type dict"),
        ({"a": None}, r"field 'a' has type NoneType"),
        ({1: 2}, r"field names must be str"),
        ({"big": 2**64}, r"does not fit in 64 bits"),
        ("not a dict", r"must be a dict"),
    ],
)
def test_bad_values_are_invalid_arguments(value, pattern):
    with pytest.raises(InvalidArgumentError, match=pattern):
        encode_value(value)


def test_garbage_is_not_decoded():
    with pytest.raises(InvalidArgumentError, match="not a Fluxon KV value"):
        decode_value(b"garbage that is long enough")
    blob = b"".join(bytes(p) for p in encode_value({"s": "x" * 100}))
    with pytest.raises(InvalidArgumentError, match="not a Fluxon KV value"):
        decode_value(blob[:-10])
