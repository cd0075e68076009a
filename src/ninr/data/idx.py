"""Reading and writing the IDX format of the (Fashion-)MNIST files.

An IDX file is two zero bytes, a dtype code (``0x08`` is unsigned byte), the number of dimensions,
one big-endian uint32 per dimension, then the values in C order. Only uint8 is supported: it is the
only dtype the MNIST-style data sets use.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import torch

from ninr.errors import ConfigError, DataError

UINT8_CODE = 0x08
_MAX_NDIM = 255


def read_idx(data: bytes, *, name: str) -> torch.Tensor:
    """Parse an uncompressed IDX file of unsigned bytes.

    Args:
        data: The whole file's bytes.
        name: What to call the file in error messages (usually its path).

    Returns:
        A writable uint8 tensor with the shape the header declares.

    Raises:
        DataError: The header is malformed, the dtype is not uint8, or the payload length does not match.

    Example:
        >>> read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]), name="demo").tolist()
        [7, 9]
    """
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file: expected a 4-byte magic number, found {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file: expected magic to start with 0x0000, found 0x{data[:2].hex()}")
    if data[2] != UINT8_CODE:
        raise DataError(f"{name}: unsupported IDX dtype: expected code 0x08 (uint8), found 0x{data[2]:02x}")
    ndim = data[3]
    if ndim == 0:
        raise DataError(f"{name}: IDX file declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header: expected {header} bytes for {ndim} dims, found {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(shape)
    if len(data) - header != count:
        raise DataError(
            f"{name}: IDX payload length mismatch: expected {count} bytes for shape {shape}, found {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=np.uint8, count=count, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def write_idx(tensor: torch.Tensor) -> bytes:
    """Encode a uint8 tensor as an uncompressed IDX file (the inverse of :func:`read_idx`).

    Args:
        tensor: A uint8 tensor with 1 to 255 dimensions.

    Returns:
        The file's bytes.

    Raises:
        ConfigError: ``tensor`` is not uint8 or has no dimensions.
    """
    if tensor.dtype != torch.uint8:
        raise ConfigError(f"`tensor` must be a uint8 tensor, got dtype {tensor.dtype}")
    if not 1 <= tensor.ndim <= _MAX_NDIM:
        raise ConfigError(f"`tensor` must have 1 to {_MAX_NDIM} dimensions, got {tensor.ndim}")
    header = bytes([0, 0, UINT8_CODE, tensor.ndim]) + struct.pack(f">{tensor.ndim}I", *tensor.shape)
    return header + tensor.detach().cpu().contiguous().numpy().tobytes()
