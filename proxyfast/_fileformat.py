"""What proxyfast's file readers share: the preamble of its binary files (proxy sets,
scores) and the reading of text files.

Each binary file starts with 8 magic bytes, a uint32 format version and a uint64 header
length, little-endian, and ends with the SHA-256 of everything before it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

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


def read_text(path: str | os.PathLike, gzipped: bool = False) -> str:
    """The contents of a UTF-8 text file (gzip-compressed when ``gzipped``). A truncated
    or corrupt gzip stream, or bytes that are not UTF-8, raise ValueError naming the file
    (and the line of the bad bytes)."""
    where = os.fspath(path)
    if gzipped:
        try:
            with gzip.open(path, "rb") as file:
                data = file.read()
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise ValueError(f"{where}: truncated or corrupt gzip file ({error})") from None
    else:
        with open(path, "rb") as file:
            data = file.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{where}: line {line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None
