"""Read TensorFlow (v1 "V2 format") checkpoints without TensorFlow.

A checkpoint with prefix ``P`` is two files:

- ``P.index``: a LevelDB SSTable (the format of ``tensorflow/core/lib/io/table.h``) mapping each
  tensor name to a serialised ``BundleEntryProto`` (dtype, shape, shard, offset, size, crc32c);
  the empty key holds the ``BundleHeaderProto`` (number of shards, endianness, version).
- ``P.data-00000-of-00001``: the tensors' raw bytes, back to back, at the offsets of the index.

The table's layout (``table_format.cc``): data blocks, a meta-index block, an index block, and a
48-byte footer (two ``BlockHandle``s, each two varint64s ``offset, size``, zero padding to 40 bytes,
then the magic number ``0xdb4775248b80fb57`` little-endian). Each block is followed by a 5-byte
trailer (compression type, masked crc32c); a block is a run of entries ``shared: varint32,
non_shared: varint32, value_length: varint32, key[shared:], value`` whose keys are stored as the
number of bytes shared with the previous key plus the rest, then ``num_restarts`` uint32 restart
offsets and the count itself. TensorFlow writes the index uncompressed; a compressed block is
refused. Only what checkpoints of float/int tensors need is decoded: protobuf varint, fixed32,
length-delimited fields; ``BundleEntryProto`` fields 1 (dtype), 2 (shape: repeated ``dim`` with
field 1 ``size``), 3 (shard_id), 4 (offset), 5 (size), 6 (crc32c) and 7 (slices, refused).

Every problem with the files is a :class:`DataError` naming the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5

#: TensorFlow ``DataType`` enum values this reader supports (``types.proto``).
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the data file (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int


def _varint(buf: bytes, pos: int, path: Path) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return ``(value, next position)``."""
    value = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DataError(f"{path}: truncated or malformed varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _proto_fields(buf: bytes, path: Path) -> list[tuple[int, int | bytes]]:
    """Split a serialised protobuf message into ``(field number, value)`` pairs.

    Varint and fixed-width values come back as ints, length-delimited ones as bytes.
    """
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, path)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos, path)
            fields.append((number, value))
        elif wire == 1:
            fields.append((number, struct.unpack_from("<Q", buf, pos)[0]))
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, path)
            if pos + length > len(buf):
                raise DataError(f"{path}: truncated protobuf field {number}")
            fields.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 5:
            fields.append((number, struct.unpack_from("<I", buf, pos)[0]))
            pos += 4
        else:
            raise DataError(f"{path}: unsupported protobuf wire type {wire} in field {number}")
    return fields


def _shape(buf: bytes, path: Path) -> tuple[int, ...]:
    """Decode a ``TensorShapeProto``: repeated ``dim`` (field 2) of ``{size: 1, name: 2}``."""
    dims: list[int] = []
    for number, value in _proto_fields(buf, path):
        if number == 2 and isinstance(value, bytes):
            size = next((v for n, v in _proto_fields(value, path) if n == 1), 0)
            assert isinstance(size, int)
            dims.append(size)
        elif number == 3 and value:
            raise DataError(f"{path}: tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: bytes, path: Path) -> TensorEntry:
    """Decode one ``BundleEntryProto``."""
    values: dict[int, int | bytes] = {}
    for number, value in _proto_fields(buf, path):
        if number == 7:
            raise DataError(f"{path}: tensor {name!r} is stored in slices (not supported)")
        values[number] = value
    dtype_code = values.get(1, 0)
    assert isinstance(dtype_code, int)
    if dtype_code not in TF_DTYPES:
        raise DataError(f"{path}: tensor {name!r} has unsupported TensorFlow dtype {dtype_code}")
    shape_buf = values.get(2, b"")
    assert isinstance(shape_buf, bytes)
    ints = {k: v for k, v in values.items() if isinstance(v, int)}
    return TensorEntry(
        name=name,
        dtype=TF_DTYPES[dtype_code],
        shape=_shape(shape_buf, path),
        shard_id=ints.get(3, 0),
        offset=ints.get(4, 0),
        size=ints.get(5, 0),
    )


def _block(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """Decode the ``(key, value)`` entries of the block at ``offset`` (prefix-compressed keys)."""
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data):
        raise DataError(f"{path}: block at byte {offset} runs past the end of the file")
    if data[end] != 0:
        raise DataError(f"{path}: compressed table block (type {data[end]}) is not supported")
    block = data[offset:end]
    if len(block) < 4:
        raise DataError(f"{path}: block at byte {offset} is too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 * (n_restarts + 1)
    if limit < 0:
        raise DataError(f"{path}: block at byte {offset} has a bad restart count")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos, path)
        non_shared, pos = _varint(block, pos, path)
        value_length, pos = _varint(block, pos, path)
        if shared > len(key) or pos + non_shared + value_length > limit:
            raise DataError(f"{path}: corrupt entry in block at byte {offset}")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def read_index(index_path: Path | str) -> dict[str, TensorEntry]:
    """Read a checkpoint's ``.index`` file.

    Parameters
    ----------
    index_path : Path or str
        The ``<prefix>.index`` file.

    Returns
    -------
    dict of str to TensorEntry
        Every tensor of the checkpoint by name, in the table's (sorted) order.

    Raises
    ------
    DataError
        The file is missing, is not an SSTable, or holds entries this reader does not support.
    """
    path = Path(index_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read checkpoint index ({exc.strerror})") from exc
    if len(data) < FOOTER_SIZE:
        raise DataError(f"{path}: too short for a TensorFlow checkpoint index")
    footer = data[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise DataError(f"{path}: not a TensorFlow checkpoint index (bad table magic)")
    _, pos = _varint(footer, 0, path)  # meta-index offset
    _, pos = _varint(footer, pos, path)  # meta-index size
    index_offset, pos = _varint(footer, pos, path)
    index_size, _ = _varint(footer, pos, path)
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block(data, index_offset, index_size, path):
        block_offset, pos = _varint(handle, 0, path)
        block_size, _ = _varint(handle, pos, path)
        for key, value in _block(data, block_offset, block_size, path):
            if key == b"":
                header = dict(_proto_fields(value, path))
                if header.get(1, 1) != 1:
                    raise DataError(f"{path}: checkpoints in several shards are not supported")
                if header.get(2, 0) != 0:
                    raise DataError(f"{path}: big-endian checkpoints are not supported")
                continue
            name = key.decode("utf-8")
            entries[name] = _entry(name, value, path)
    if not entries:
        raise DataError(f"{path}: checkpoint index lists no tensors")
    return entries


def read_tensors(prefix: Path | str, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read tensors of a checkpoint with prefix ``prefix`` (``prefix.index``, ``prefix.data-*``).

    Parameters
    ----------
    prefix : Path or str
        The checkpoint prefix (for a file ``dir/.index`` the prefix is ``dir/``).
    names : list of str, optional
        The tensors to read; all of them when omitted.

    Returns
    -------
    dict of str to np.ndarray
        Native-endian arrays of the stored dtype and shape.

    Raises
    ------
    DataError
        A file is missing or truncated, a name is unknown, or a size disagrees with the shape.
    """
    prefix = str(prefix)
    index = read_index(prefix + ".index")
    data_path = Path(prefix + ".data-00000-of-00001")
    try:
        data = data_path.read_bytes()
    except OSError as exc:
        raise DataError(f"{data_path}: cannot read checkpoint data ({exc.strerror})") from exc
    wanted = list(index) if names is None else names
    tensors: dict[str, np.ndarray] = {}
    for name in wanted:
        if name not in index:
            raise DataError(f"{prefix}.index: no tensor named {name!r}")
        e = index[name]
        expected = int(np.prod(e.shape, dtype=np.int64)) * e.dtype.itemsize
        if e.size != expected or e.offset + e.size > len(data):
            raise DataError(
                f"{data_path}: tensor {name!r} ({e.size} bytes at {e.offset}) does not fit "
                f"shape {e.shape} or the file's {len(data)} bytes"
            )
        array = np.frombuffer(
            data, dtype=e.dtype, count=e.size // e.dtype.itemsize, offset=e.offset
        )
        tensors[name] = array.reshape(e.shape).astype(e.dtype.newbyteorder("="))
    return tensors
