from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save

from llmops.artifacts.tensors import UnsafeFileError, decode_tensor, read_header


def raw_file(header: object, data: bytes = b"", *, length: int | None = None) -> bytes:
    blob = json.dumps(header).encode() if not isinstance(header, bytes) else header
    prefix = struct.pack("<Q", len(blob) if length is None else length)
    return prefix + blob + data


def parse(blob: bytes):  # type: ignore[no-untyped-def]
    return read_header(io.BytesIO(blob), path="w.safetensors", file_size=len(blob))


def test_valid_file_parses_with_absolute_offsets() -> None:
    blob = save({"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.int64)}, metadata={"k": "v"})
    header = parse(blob)
    assert header.metadata == {"k": "v"}
    by_name = {t.name: t for t in header.tensors}
    assert by_name["a"].shape == (2, 3) and by_name["a"].dtype == "F32"
    a = by_name["a"]
    assert blob[a.start : a.end] == np.zeros((2, 3), np.float32).tobytes()


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"\x01\x02", "too short for the 8-byte length prefix"),
        (raw_file({}, length=10**12), "exceeds the 104857600-byte cap"),
        (raw_file({}, length=5000), "runs past the end"),
        (raw_file(b"{not json"), "not UTF-8 JSON"),
        (raw_file(b"\xff\xfe\x00\x00"), "not UTF-8 JSON"),
        (raw_file([1, 2]), "not a JSON object"),
        (
            raw_file({"t": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
            "unknown dtype 'F99'",
        ),
        (
            raw_file({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
            "invalid shape",
        ),
        (
            raw_file({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
            "is 4 bytes but F32\\[2\\] needs 8",
        ),
        (
            raw_file({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}}, b"\0" * 4),
            "out of bounds",
        ),
        (
            raw_file({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4),
            "out of bounds",
        ),
        (
            raw_file({"t": {"dtype": "F32", "shape": [1], "data_offsets": "x"}}, b"\0" * 4),
            "invalid data_offsets",
        ),
        (
            raw_file(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "overlaps",
        ),
        (raw_file({"__metadata__": {"k": 1}}), "__metadata__ must map strings"),
    ],
)
def test_hostile_or_truncated_headers_are_refused(blob: bytes, match: str) -> None:
    with pytest.raises(UnsafeFileError, match=match) as info:
        parse(blob)
    assert str(info.value).startswith("w.safetensors: invalid safetensors header")


def test_truncated_real_file_is_refused() -> None:
    blob = save({"a": np.zeros(1000, np.float32)})
    with pytest.raises(UnsafeFileError, match="out of bounds"):
        parse(blob[:-10])


def test_decode_bf16_widens_to_float32() -> None:
    values = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    assert decode_tensor(bf16, "BF16", (3,)).tolist() == [1.5, -2.0, 3.25]


def test_decode_f8_needs_raw() -> None:
    with pytest.raises(ValueError, match="raw=True"):
        decode_tensor(b"\0", "F8_E4M3", (1,))


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (
            b'{"__metadata__": {"a": "b"}, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nested too deeply",
        ),
        (
            b'{"t": {"dtype": "F32", "shape": [' + b"1" * 100_000 + b'], "data_offsets": [0, 4]}}',
            "number too large",
        ),
        (b'{"__metadata__": {"a": "\\ud800"}}', "lone surrogate"),
    ],
)
def test_hostile_json_in_a_header_is_one_clear_error(header: bytes, match: str) -> None:
    blob = struct.pack("<Q", len(header)) + header + b"\0" * 4
    with pytest.raises(UnsafeFileError, match=match):
        parse(blob)
