"""safetensors headers: parse and validate them before any use, and decode single tensors.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON describing every
tensor (dtype, shape, ``data_offsets`` relative to the end of the header), then the tensor bytes.
Everything in the header comes from whoever wrote the file, so it is checked here: size cap,
offsets in bounds and not overlapping, byte length equal to shape times dtype size.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import IO, Any

from llmops import _jsonsafe as jsonsafe
from llmops.errors import UnsafeFileError

__all__ = [
    "DTYPE_SIZES",
    "MAX_HEADER_BYTES",
    "SafetensorsHeader",
    "TensorRange",
    "UnsafeFileError",
    "decode_tensor",
    "read_header",
]

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""The same cap the safetensors library applies; a header larger than this is refused."""

DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TensorRange:
    """One tensor of a safetensors file, with absolute byte offsets in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """A validated header."""

    header_length: int
    """N: the JSON header's length; tensor data starts at ``8 + N``."""
    tensors: tuple[TensorRange, ...]
    """Tensors in file order."""
    metadata: dict[str, str]
    """The ``__metadata__`` string map."""

    @property
    def data_start(self) -> int:
        """Offset of the first tensor byte."""
        return 8 + self.header_length


def _bad(path: str, what: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{path}: invalid safetensors header: {what}",
        hint="the file is truncated or was not written by a safetensors library; re-export it",
    )


def read_header(fh: IO[bytes], *, path: str, file_size: int | None = None) -> SafetensorsHeader:
    """Read and validate the header of an open safetensors file.

    Raises:
        UnsafeFileError: The header is truncated, too large, not JSON, or describes tensors that
            are out of bounds, overlap, or disagree with their dtype and shape.
    """
    if file_size is None:
        file_size = os.fstat(fh.fileno()).st_size
    prefix = fh.read(8)
    if len(prefix) != 8:
        raise _bad(path, f"file is {file_size} bytes, too short for the 8-byte length prefix")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise _bad(path, f"header length {length} exceeds the {MAX_HEADER_BYTES}-byte cap")
    if 8 + length > file_size:
        raise _bad(path, f"header length {length} runs past the end of the {file_size}-byte file")
    raw = fh.read(length)
    try:
        doc = jsonsafe.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(path, f"header is not UTF-8 JSON ({str(exc)[:200]})") from None
    if not isinstance(doc, dict):
        raise _bad(path, "header is not a JSON object")
    data_len = file_size - 8 - length
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _bad(path, "__metadata__ must map strings to strings")
    tensors = [_tensor(path, name, entry, data_len, 8 + length) for name, entry in doc.items()]
    tensors.sort(key=lambda t: (t.start, t.end))
    previous_end = 8 + length
    for tensor in tensors:
        if tensor.start < previous_end:
            raise _bad(path, f"tensor {tensor.name!r} overlaps the tensor before it")
        previous_end = max(previous_end, tensor.end)
    return SafetensorsHeader(header_length=length, tensors=tuple(tensors), metadata=metadata)


def _tensor(path: str, name: str, entry: Any, data_len: int, base: int) -> TensorRange:
    if not isinstance(entry, dict):
        raise _bad(path, f"entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise _bad(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _bad(path, f"tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise _bad(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise _bad(
            path, f"tensor {name!r} data_offsets [{begin}, {end}] out of bounds (0..{data_len})"
        )
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != expected:
        raise _bad(
            path,
            f"tensor {name!r} is {end - begin} bytes but {dtype}{shape} needs {expected}",
        )
    return TensorRange(
        name=name, dtype=dtype, shape=tuple(shape), start=base + begin, end=base + end
    )


_NUMPY_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "I32": "int32", "U32": "uint32", "F32": "float32", "I64": "int64",
    "U64": "uint64", "F64": "float64",
}  # fmt: skip


def decode_tensor(data: bytes, dtype: str, shape: tuple[int, ...]) -> Any:
    """Tensor bytes as a numpy array; BF16 is widened to float32 (numpy has no bfloat16).

    Raises:
        ValueError: The dtype has no numpy equivalent (8-bit floats).
    """
    import numpy as np

    if dtype == "BF16":
        halves = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(shape)
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"dtype {dtype} has no numpy equivalent; read it with raw=True")
    return np.frombuffer(data, dtype=np.dtype(_NUMPY_DTYPES[dtype]).newbyteorder("<")).reshape(
        shape
    )
