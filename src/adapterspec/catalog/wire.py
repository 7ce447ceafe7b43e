"""The bytes that cross the sandbox boundary: values only, never code.

A worker that ran an entry's pseudocode may have been subverted, so what it sends back is decoded as data: a JSON
document of tagged values plus the raw bytes of any tensors, checked for type, dtype, shape and size. Nothing is
unpickled, nothing is imported, no object of the worker's choosing is constructed.

Values: ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples, dicts with string keys, and CPU tensors of the
dtypes in `DTYPES`. In the JSON, containers and tensors are tagged arrays (``["T", ...]`` for a tuple), so a value can
never be mistaken for another kind.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import torch

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float64, torch.float32, torch.complex128, torch.complex64, torch.int64, torch.int32, torch.bool)}
MAX_BYTES = 64 * 2**20  # a reply larger than this is refused (verification tensors are kilobytes)
MAX_DEPTH = 16
_HEADER = struct.Struct(">Q")


class WireError(ValueError):
    """Bytes that are not a well-formed message of this format."""


def encode(value: Any) -> bytes:
    """``value`` as bytes; raises `WireError` for a type that may not cross."""
    blobs: list[bytes] = []
    offset = 0

    def enc(v: Any, depth: int) -> Any:
        nonlocal offset
        if depth > MAX_DEPTH:
            raise WireError(f"nested deeper than {MAX_DEPTH}")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else ["F", repr(v)]
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            name = str(t.dtype).removeprefix("torch.")
            if name not in DTYPES:
                raise WireError(f"tensor dtype {name} cannot be returned (allowed: {', '.join(DTYPES)})")
            data = t.numpy().tobytes() if t.numel() else b""
            blobs.append(data)
            offset += len(data)
            return ["X", name, list(t.shape), offset - len(data), len(data)]
        if isinstance(v, (list, tuple)):
            return ["T" if isinstance(v, tuple) else "L", *(enc(x, depth + 1) for x in v)]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise WireError("dict keys must be strings")
            return ["D", *([k, enc(x, depth + 1)] for k, x in v.items())]
        raise WireError(f"a value of type {type(v).__name__} cannot be returned")

    doc = json.dumps(enc(value, 0), allow_nan=False).encode()
    body = b"".join(blobs)
    return _HEADER.pack(len(doc)) + doc + body


def decode(data: bytes) -> Any:
    """The value ``encode`` wrote; raises `WireError` on anything malformed."""
    if len(data) > MAX_BYTES:
        raise WireError(f"message of {len(data)} bytes exceeds {MAX_BYTES}")
    if len(data) < _HEADER.size:
        raise WireError("truncated message")
    (n,) = _HEADER.unpack_from(data)
    if n > len(data) - _HEADER.size:
        raise WireError("truncated message")
    try:
        doc = json.loads(data[_HEADER.size:_HEADER.size + n])
    except (ValueError, RecursionError) as e:
        raise WireError(f"not a valid message: {e}") from None
    body = memoryview(data)[_HEADER.size + n:]

    def dec(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"nested deeper than {MAX_DEPTH}")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if not isinstance(v, list) or not v or v[0] not in ("F", "X", "T", "L", "D"):
            raise WireError("unknown value tag")
        tag, rest = v[0], v[1:]
        if tag == "F":
            if rest not in (["nan"], ["inf"], ["-inf"]):
                raise WireError("bad float")
            return float(rest[0])
        if tag == "X":
            return _tensor(rest, body)
        if tag == "D":
            if not all(isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in rest):
                raise WireError("bad dict")
            return {k: dec(x, depth + 1) for k, x in rest}
        items = [dec(x, depth + 1) for x in rest]
        return tuple(items) if tag == "T" else items

    return dec(doc, 0)


def _tensor(spec: list, body: memoryview) -> torch.Tensor:
    if len(spec) != 4:
        raise WireError("bad tensor")
    name, shape, start, size = spec
    if name not in DTYPES or not isinstance(shape, list) or len(shape) > 8:
        raise WireError("bad tensor dtype or shape")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 2**31 for d in shape):
        raise WireError("bad tensor shape")
    if not (isinstance(start, int) and isinstance(size, int) and 0 <= start and start + size <= len(body)):
        raise WireError("tensor bytes out of range")
    dtype = DTYPES[name]
    if math.prod(shape) * torch.empty((), dtype=dtype).element_size() != size:
        raise WireError("tensor size does not match its shape")
    if size == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(body[start:start + size]), dtype=dtype).reshape(shape).clone()
