"""The preamble shared by proxyfast's binary files (proxy sets, scores).

Each file starts with 8 magic bytes, a uint32 format version and a uint64 header
length, little-endian, and ends with the SHA-256 of everything before it.
"""

from __future__ import annotations

import struct

from ._version import __version__

PREAMBLE = struct.Struct("<8sIQ")  # magic, format version, header length
DIGEST_SIZE = 32


def read_preamble(path: str, data, magic: bytes, kind: str, format_version: int) -> tuple[int, int]:
    """Checks the magic bytes and the format version of a ``kind`` file ("proxy set",
    "scores") and returns ``(version, header_length)``. The version is checked before the
    checksum: a newer format may place the checksum elsewhere."""
    if bytes(data[: len(magic)]) != magic:
        if len(data) < len(magic) and magic.startswith(bytes(data)):
            raise ValueError(f"{path}: truncated {kind} file ({len(data)} bytes)")
        raise ValueError(f"{path}: not a proxyfast {kind} file (bad magic bytes)")
    if len(data) < PREAMBLE.size:
        raise ValueError(f"{path}: truncated {kind} file ({len(data)} bytes)")
    _, version, header_length = PREAMBLE.unpack_from(data)
    if version > format_version:
        raise ValueError(
            f"{path}: written by a newer proxyfast ({kind} format version {version}; proxyfast {__version__} "
            f"reads up to version {format_version}); upgrade proxyfast to read it"
        )
    if version < 1:
        raise ValueError(f"{path}: invalid {kind} file format version {version}")
    return version, header_length
