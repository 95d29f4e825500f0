"""The NEFF container of nrt_lab: the 1024-byte header of SPEC §8, the tar payload, and a strict reader.

File layout
-----------
``[header: 1024 bytes][payload: data_size bytes]``

The header is the ``neff_header_t`` of the public docs, little-endian, packed with no implicit padding
(:data:`HEADER_FORMAT`; the field sizes add up to exactly 1024 bytes, so ``pad`` is the documented 468)::

    u64 pkg_version, header_size, data_size, neff_version_major, neff_version_minor;
    u8 neff_build_version[128]; u32 num_tpb; u8 hash[32]; u8 uuid[16]; char name[256];
    u32 requested_tpb_count; u8 tpb_per_node[64]; u64 feature_bits; u32 lnc_size; u8 pad[468]

nrt_lab's choices where the docs are silent (inf):

* ``pkg_version`` is written as :data:`PKG_VERSION` (3) and ``hash`` is the sha256 of the payload. The docs say
  the hash is "sha256 or md5 depending on pkg_version" and the one public sample (pkg_version 2) carries a
  16-byte hash, so pkg_version 1 and 2 are read as md5 in the first 16 bytes of ``hash``.
* ``num_tpb`` is the number of subgraphs in the payload; ``tpb_per_node[0]`` is that number too (our single
  Neuron Core node spans every subgraph) and the other bytes are zero. ``requested_tpb_count`` is the number of
  (logical) NeuronCores the model asks for; ``lnc_size`` is 1 or 2.
* ``feature_bits`` must be 0: no optional features are emulated, so a NEFF asking for any is refused with
  NRT_UNSUPPORTED_NEFF_VERSION, like a runtime too old for it.
* ``name`` and ``neff_build_version`` are NUL-terminated UTF-8; ``pad`` is ignored.

The payload is an **uncompressed** POSIX ustar archive. Compression is left out on purpose: a plain tar is
read straight from memory with known sizes, so there is no decompression bomb to bound (neuron-packager's
``optimize`` also writes uncompressed NEFFs). pax and GNU extension records are refused (member paths are
short: at most 100 bytes plus the ustar prefix), and a small in-memory reader replaces :mod:`tarfile`, whose
pax parsing is quadratic in CPython < 3.11.10 (CVE-2024-6232). Bytes after the end-of-archive block are
ignored, as tar does. The payload holds, per subgraph ``sg00``, ``sg01``, … (contiguous, at most
:data:`MAX_SUBGRAPHS`):

* ``sgNN/def.json``: the subgraph definition, schema :data:`DEF_JSON_SCHEMA` (``var`` list + op ``nodes``);
* the constants of its ``file`` vars as ``.npy`` files (format 1.0/2.0, plain little-endian dtype) at
  ``sgNN/<var.file>``. ``bfloat16`` and ``float8_*`` constants are stored as their raw bits (``uint16`` /
  ``uint8``) because ``.npy`` has no such types, and viewed back on load.

Nothing else may be in the tar (directory entries aside). Every subgraph must declare the same inputs and
outputs (name, dtype, shape): with LNC=2, sg00 and sg01 are the two physical cores of one logical core.

Loading (:func:`parse_neff`) never touches the filesystem, never unpickles (``allow_pickle=False``), bounds
every size and count, and reports anything malformed as ``NrtError(NrtStatus.INVALID, ...)`` naming the
problem; a NEFF newer than :data:`SUPPORTED_NEFF_VERSION` is ``NrtError(NrtStatus.UNSUPPORTED_NEFF_VERSION,
"NEFF version mismatch supported: 2.0 received: X.Y")`` (SPEC §8). Op names are not checked here (the runtime
checks them against its kernel registry), but the node structure and the data flow are.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import struct
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from nrt_lab.errors import NrtError, NrtStatus

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_NEFF_BYTES",
    "DEF_JSON_SCHEMA",
    "DEF_SCHEMA_ID",
    "DTYPES",
    "EXECUTORS",
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "MAX_SUBGRAPHS",
    "PKG_VERSION",
    "SUPPORTED_NEFF_VERSION",
    "VAR_TYPES",
    "NeffHeader",
    "NeffModel",
    "NeffNode",
    "NeffSubgraph",
    "NeffVar",
    "TensorInfo",
    "check_neff_version",
    "dtype_itemsize",
    "numpy_dtype",
    "parse_neff",
    "parse_neff_header",
    "read_neff",
    "storage_dtype",
]

# --------------------------------------------------------------------------------------------- constants

HEADER_SIZE = 1024
"""Bytes in the NEFF header (``header_size`` must hold exactly this)."""

HEADER_FORMAT = "<5Q128sI32s16s256sI64sQI468s"
"""``struct`` layout of the header, field by field in SPEC §8 order, little-endian, no implicit padding."""

_HEADER = struct.Struct(HEADER_FORMAT)
assert _HEADER.size == HEADER_SIZE, "NEFF header layout must be exactly 1024 bytes"

PKG_VERSION = 3
"""``pkg_version`` nrt_lab writes: 3 = the header hash is the sha256 of the payload (1, 2 = md5, read only)."""

SUPPORTED_NEFF_VERSION: tuple[int, int] = (2, 0)
"""Newest NEFF (major, minor) the emulated runtime 2.x loads; every older version (0.6, 1.0, …) loads too."""

DEFAULT_MAX_NEFF_BYTES = 1 << 30
"""Default cap on a whole NEFF (header + payload), hence on every member and on all members together."""

DEFAULT_MAX_MEMBERS = 4096
"""Default cap on the number of tar members."""

MAX_SUBGRAPHS = 64
"""Most subgraphs a NEFF may hold (``tpb_per_node`` has 64 entries)."""

DEF_SCHEMA_ID = "nrt_lab.neff.def/1"
"""Value of the ``schema`` key of every ``def.json``."""

VAR_TYPES = ("input", "output", "file", "virtual", "state-buffer")
"""``type`` of a ``def.json`` var."""

EXECUTORS = ("Neuron Core", "CPU")
"""``executor`` of an op node (the names of the ``NEFF Nodes:`` listing)."""

_MAX_DEF_JSON_BYTES = 16 << 20
_MAX_VARS = 65536
_MAX_NODES = 65536
_MAX_NODE_ARITY = 1024
_MAX_RANK = 16
_MAX_DIM = 2**32 - 1
_MAX_TENSOR_BYTES = 1 << 48
_MAX_NAME_BYTES = 255
_MAX_ATTR_DEPTH = 8
_MAX_NPY_HEADER = 10000
_MAX_PATH_DEPTH = 4
_SUBGRAPH_RE = re.compile(r"sg(\d\d)")
_PATH_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.-]+")


def _mk_dtypes() -> dict[str, tuple[np.dtype[Any], np.dtype[Any]]]:
    """name -> (logical numpy dtype, dtype stored in .npy)."""
    table: dict[str, tuple[np.dtype[Any], np.dtype[Any]]] = {}
    for name in (
        "uint64",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "float16",
        "int32",
        "uint32",
        "float32",
        "int64",
    ):
        dt = np.dtype(name).newbyteorder("<")
        table[name] = (dt, dt)
    table["bfloat16"] = (np.dtype(ml_dtypes.bfloat16), np.dtype("<u2"))
    for name in ("float8_e3m4", "float8_e4m3", "float8_e4m3fn", "float8_e5m2"):
        table[name] = (np.dtype(getattr(ml_dtypes, name)), np.dtype("u1"))
    return table


DTYPES: Mapping[str, tuple[np.dtype[Any], np.dtype[Any]]] = types.MappingProxyType(_mk_dtypes())
"""Supported dtype names (the ``nrt_dtype_t`` types of SPEC §3.2) -> (numpy dtype, ``.npy`` storage dtype)."""


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The numpy dtype of a NEFF dtype name (``bfloat16``/``float8_*`` come from ml_dtypes)."""
    try:
        return DTYPES[name][0]
    except KeyError:
        raise NrtError(
            NrtStatus.INVALID, f"unknown dtype {name!r} (supported: {', '.join(DTYPES)})"
        ) from None


def storage_dtype(name: str) -> np.dtype[Any]:
    """The dtype a constant of NEFF dtype ``name`` has inside its ``.npy`` file (raw bits for bf16/fp8)."""
    numpy_dtype(name)
    return DTYPES[name][1]


def dtype_itemsize(name: str) -> int:
    """Bytes per element of a NEFF dtype name."""
    return int(numpy_dtype(name).itemsize)


def check_neff_version(major: int, minor: int) -> None:
    """Raise NRT_UNSUPPORTED_NEFF_VERSION with SPEC §8's message if the runtime cannot load this NEFF version."""
    if (major, minor) > SUPPORTED_NEFF_VERSION:
        s_major, s_minor = SUPPORTED_NEFF_VERSION
        raise NrtError(
            NrtStatus.UNSUPPORTED_NEFF_VERSION,
            f"NEFF version mismatch supported: {s_major}.{s_minor} received: {major}.{minor}",
        )


def _invalid(message: str) -> NrtError:
    return NrtError(NrtStatus.INVALID, message)


# --------------------------------------------------------------------------------------------- JSON schema

_NAME_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": _MAX_NAME_BYTES}
_SHAPE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": _MAX_RANK,
    "items": {"type": "integer", "minimum": 0, "maximum": _MAX_DIM},
}
_VAR_COMMON: dict[str, Any] = {
    "name": _NAME_SCHEMA,
    "dtype": {"enum": list(DTYPES)},
    "shape": _SHAPE_SCHEMA,
    "size": {"type": "integer", "minimum": 0},
}


def _var_schema(var_type: str, extra: dict[str, Any]) -> dict[str, Any]:
    props = {"type": {"const": var_type}, **_VAR_COMMON, **extra}
    return {"type": "object", "additionalProperties": False, "required": list(props), "properties": props}


DEF_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "nrt_lab NEFF subgraph definition (sgNN/def.json)",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema", "var", "nodes"],
    "properties": {
        "schema": {"const": DEF_SCHEMA_ID},
        "var": {
            "type": "array",
            "maxItems": _MAX_VARS,
            "items": {
                "oneOf": [
                    _var_schema("input", {}),
                    _var_schema("output", {}),
                    _var_schema(
                        "file",
                        {
                            "file": {
                                "type": "string",
                                "pattern": r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,3}$",
                            }
                        },
                    ),
                    _var_schema("virtual", {"offset": {"type": "integer", "minimum": 0}}),
                    _var_schema("state-buffer", {}),
                ]
            },
        },
        "nodes": {
            "type": "array",
            "maxItems": _MAX_NODES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "op", "inputs", "outputs", "attrs", "executor"],
                "properties": {
                    "name": _NAME_SCHEMA,
                    "op": _NAME_SCHEMA,
                    "inputs": {"type": "array", "maxItems": _MAX_NODE_ARITY, "items": _NAME_SCHEMA},
                    "outputs": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": _MAX_NODE_ARITY,
                        "uniqueItems": True,
                        "items": _NAME_SCHEMA,
                    },
                    "attrs": {"type": "object"},
                    "executor": {"enum": list(EXECUTORS)},
                },
            },
        },
    },
}
"""JSON Schema (draft 2020-12) of ``def.json``, for documentation and external tools.

The loader does not need the ``jsonschema`` package: it checks the same rules by hand, plus what JSON Schema
cannot say: names are unique and at most 255 UTF-8 bytes without control characters, ``size`` equals
``prod(shape) * itemsize``, ``file`` paths have no ``.``/``..`` component and end in ``.npy``, attrs nest at
most 8 deep with finite numbers, node inputs name existing vars produced earlier (nodes are listed in
execution order), node outputs are ``output``/``virtual``/``state-buffer`` vars, every ``output`` and
``virtual`` var has at most one producer and every ``output`` var has one, and there is at least one output.
"""


# --------------------------------------------------------------------------------------------- data model


class TensorInfo(NamedTuple):
    """An input or output tensor as ``nrt_get_model_tensor_info`` reports it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int


@dataclasses.dataclass(frozen=True)
class NeffHeader:
    """The decoded 1024-byte NEFF header (SPEC §8); ``pack()`` writes it back byte for byte (pad as zeros)."""

    pkg_version: int
    header_size: int
    data_size: int
    neff_version_major: int
    neff_version_minor: int
    build_version: str
    num_tpb: int
    hash: bytes
    uuid: bytes
    name: str
    requested_tpb_count: int
    tpb_per_node: bytes
    feature_bits: int
    lnc_size: int

    @property
    def neff_version(self) -> tuple[int, int]:
        """(major, minor)."""
        return (self.neff_version_major, self.neff_version_minor)

    @property
    def uuid_hex(self) -> str:
        """The uuid as 32 lowercase hex digits."""
        return self.uuid.hex()

    @property
    def hash_hex(self) -> str:
        """The hash in hex: 64 digits (sha256), or 32 (md5) for pkg_version 1 and 2."""
        return self.hash[: _hash_len(self.pkg_version)].hex()

    def pack(self) -> bytes:
        """The header as its 1024 on-disk bytes; raises NRT_INVALID if a field does not fit."""
        name = self.name.encode("utf-8")
        build = self.build_version.encode("utf-8")
        if len(name) > _MAX_NAME_BYTES or "\x00" in self.name:
            raise _invalid(f"NEFF name must be at most {_MAX_NAME_BYTES} UTF-8 bytes without NUL")
        if len(build) > 127 or "\x00" in self.build_version:
            raise _invalid("NEFF build version must be at most 127 UTF-8 bytes without NUL")
        if len(self.hash) != 32 or len(self.uuid) != 16 or len(self.tpb_per_node) != 64:
            raise _invalid("NEFF header hash/uuid/tpb_per_node must be 32/16/64 bytes")
        try:
            return _HEADER.pack(
                self.pkg_version,
                self.header_size,
                self.data_size,
                self.neff_version_major,
                self.neff_version_minor,
                build,
                self.num_tpb,
                self.hash,
                self.uuid,
                name,
                self.requested_tpb_count,
                self.tpb_per_node,
                self.feature_bits,
                self.lnc_size,
                b"",
            )
        except struct.error as exc:
            raise _invalid(f"NEFF header field out of range: {exc}") from None


def _hash_len(pkg_version: int) -> int:
    return 32 if pkg_version >= 3 else 16


@dataclasses.dataclass(frozen=True)
class NeffVar:
    """One ``var`` entry of ``def.json``; ``kind`` is its ``type`` (input/output/file/virtual/state-buffer)."""

    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...]
    size: int
    file: str | None = None
    offset: int | None = None

    @property
    def np_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the var."""
        return numpy_dtype(self.dtype)

    @property
    def info(self) -> TensorInfo:
        """(name, dtype, shape, size in bytes)."""
        return TensorInfo(self.name, self.dtype, self.shape, self.size)


@dataclasses.dataclass(frozen=True)
class NeffNode:
    """One op of a subgraph: kernel ``op`` reads ``inputs`` and writes ``outputs`` (var names), run on ``executor``."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    executor: str


@dataclasses.dataclass(frozen=True, eq=False)
class NeffSubgraph:
    """One ``sgNN`` of the payload: its vars, ops in execution order, and loaded constants (read-only arrays)."""

    name: str
    vars: tuple[NeffVar, ...]
    nodes: tuple[NeffNode, ...]
    constants: Mapping[str, np.ndarray[Any, Any]]
    inputs: tuple[NeffVar, ...] = dataclasses.field(init=False, repr=False)
    """The ``input`` vars, in declaration order."""
    outputs: tuple[NeffVar, ...] = dataclasses.field(init=False, repr=False)
    """The ``output`` vars, in declaration order."""
    _by_name: Mapping[str, NeffVar] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(v for v in self.vars if v.kind == "input"))
        object.__setattr__(self, "outputs", tuple(v for v in self.vars if v.kind == "output"))
        object.__setattr__(self, "_by_name", types.MappingProxyType({v.name: v for v in self.vars}))

    @property
    def scratchpad_size(self) -> int:
        """max(offset + size) over the ``virtual`` vars (SPEC §8), 0 without any."""
        return max((int(v.offset or 0) + v.size for v in self.vars if v.kind == "virtual"), default=0)

    def var(self, name: str) -> NeffVar:
        """The var called ``name``; KeyError if there is none."""
        return self._by_name[name]


@dataclasses.dataclass(frozen=True, eq=False)
class NeffModel:
    """A parsed NEFF: the header and its subgraphs. The model's inputs/outputs are those of ``sg00``."""

    header: NeffHeader
    subgraphs: tuple[NeffSubgraph, ...]

    @property
    def name(self) -> str:
        """Network name from the header."""
        return self.header.name

    @property
    def uuid(self) -> str:
        """UUID as 32 hex digits."""
        return self.header.uuid_hex

    @property
    def hash(self) -> str:
        """Header hash in hex."""
        return self.header.hash_hex

    @property
    def neff_version(self) -> tuple[int, int]:
        """(major, minor) NEFF version."""
        return self.header.neff_version

    @property
    def build_version(self) -> str:
        """Build version string of the header."""
        return self.header.build_version

    @property
    def pkg_version(self) -> int:
        """Package (tool) version of the header."""
        return self.header.pkg_version

    @property
    def requested_cores(self) -> int:
        """NeuronCores the model asks for (``requested_tpb_count``)."""
        return self.header.requested_tpb_count

    @property
    def lnc(self) -> int:
        """Logical NeuronCore size (1 or 2)."""
        return self.header.lnc_size

    @property
    def num_tpb(self) -> int:
        """Number of subgraphs/TPBs (``num_tpb``)."""
        return self.header.num_tpb

    @property
    def feature_bits(self) -> int:
        """Feature bits of the header (always 0 once loaded)."""
        return self.header.feature_bits

    def input_infos(self) -> tuple[TensorInfo, ...]:
        """The model inputs as (name, dtype, shape, size in bytes), in declaration order."""
        return tuple(v.info for v in self.subgraphs[0].inputs)

    def output_infos(self) -> tuple[TensorInfo, ...]:
        """The model outputs as (name, dtype, shape, size in bytes), in declaration order."""
        return tuple(v.info for v in self.subgraphs[0].outputs)


# --------------------------------------------------------------------------------------------- header


def _cstring(raw: bytes, what: str) -> str:
    end = raw.find(b"\x00")
    if end < 0:
        raise _invalid(f"NEFF {what} is not NUL-terminated")
    try:
        return raw[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"NEFF {what} is not valid UTF-8") from None


def parse_neff_header(data: bytes) -> NeffHeader:
    """Decode and check the header alone (no payload checks): enough for ``neuron-packager info``-like tools."""
    if len(data) < HEADER_SIZE:
        raise _invalid(f"NEFF is too short: {len(data)} bytes, the header alone is {HEADER_SIZE} bytes")
    fields = _HEADER.unpack_from(data, 0)
    (pkg, hsize, dsize, major, minor, build, num_tpb, digest, uuid, name, req, per_node, feats, lnc, _pad) = (
        fields
    )
    if hsize != HEADER_SIZE:
        raise _invalid(f"NEFF header_size is {hsize}, expected {HEADER_SIZE}")
    check_neff_version(major, minor)
    if feats != 0:
        raise NrtError(
            NrtStatus.UNSUPPORTED_NEFF_VERSION,
            f"NEFF requires features this runtime does not support: feature_bits 0x{feats:x}",
        )
    if pkg not in (1, 2, 3):
        raise _invalid(f"NEFF pkg_version {pkg} is not supported (expected 1, 2 or 3)")
    header = NeffHeader(
        pkg_version=pkg,
        header_size=hsize,
        data_size=dsize,
        neff_version_major=major,
        neff_version_minor=minor,
        build_version=_cstring(build, "build version"),
        num_tpb=num_tpb,
        hash=digest,
        uuid=uuid,
        name=_cstring(name, "name"),
        requested_tpb_count=req,
        tpb_per_node=per_node,
        feature_bits=feats,
        lnc_size=lnc,
    )
    if lnc not in (1, 2):
        raise _invalid(f"NEFF lnc_size is {lnc}, expected 1 or 2")
    if req == 0:
        raise _invalid("NEFF requested_tpb_count is 0, at least 1 NeuronCore must be requested")
    if not 1 <= num_tpb <= MAX_SUBGRAPHS:
        raise _invalid(f"NEFF num_tpb is {num_tpb}, expected 1 to {MAX_SUBGRAPHS}")
    return header


# --------------------------------------------------------------------------------------------- payload


def _check_member_path(name: str) -> None:
    if not name:
        raise _invalid("NEFF payload has a tar member with an empty name")
    if "\x00" in name or "\\" in name:
        raise _invalid(f"NEFF payload member {name!r} has a NUL or backslash in its path")
    if name.startswith("/"):
        raise _invalid(f"NEFF payload member {name!r} has an absolute path")
    parts = name.split("/")
    if any(p in (".", "..") for p in parts):
        raise _invalid(f"NEFF payload member {name!r} has a path traversal component ('.' or '..')")
    if any(p == "" for p in parts):
        raise _invalid(f"NEFF payload member {name!r} has an empty path component")
    if len(parts) > _MAX_PATH_DEPTH + 1:
        raise _invalid(f"NEFF payload member {name!r} is nested too deep")
    for p in parts:
        if not _PATH_COMPONENT_RE.fullmatch(p):
            raise _invalid(f"NEFF payload member {name!r} has characters outside [A-Za-z0-9_.-] in its path")


# Tokens of an .npy header dict, one way only to match each character (linear, no backtracking blow-up);
# no backslashes or keywords, so ast.literal_eval never warns about escapes or "1if"-style literals.
_NPY_HEADER_RE = re.compile(r"""(?:[ \t\n{}(),:]|'[^'\\\n]*'|"[^"\\\n]*"|[0-9]|True|False)*""")

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_FILE_TYPES = (b"0", b"\x00")
_LINK_TYPES = (b"1", b"2")
_EXTENDED_TYPES = (b"x", b"g", b"L", b"K")


def _octal(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:
        raise _invalid(f"NEFF payload {what} uses base-256 numbers, which nrt_lab does not accept")
    digits = field.replace(b"\x00", b" ").strip(b" ")
    if not digits:
        return 0
    if not all(0x30 <= c <= 0x37 for c in digits):
        raise _invalid(f"NEFF payload {what} is not an octal number")
    return int(digits, 8)


def _read_members(
    payload: memoryview, max_size: int, max_members: int
) -> tuple[dict[str, memoryview], set[str]]:
    """Regular files (path -> bytes) and directory entries of a ustar payload, after every safety check.

    A small reader of our own rather than :mod:`tarfile`: it works on the bytes in memory with every size
    checked before use, accepts only plain ustar headers (no pax/GNU extension records, whose parsing in
    CPython < 3.11.10/3.12.6 is quadratic, CVE-2024-6232), and stops at nothing silently.
    """
    if bytes(payload[:2]) == b"\x1f\x8b":
        raise _invalid("NEFF payload is gzip-compressed; nrt_lab reads uncompressed tar payloads only")
    files: dict[str, memoryview] = {}
    dirs: set[str] = set()
    total = 0
    count = 0
    offset = 0
    while True:
        block = bytes(payload[offset : offset + _BLOCK])
        if len(block) < _BLOCK:
            where = "no tar header" if offset == 0 else "no end-of-archive marker"
            raise _invalid(f"NEFF payload is not a valid tar archive: truncated at byte {offset} ({where})")
        if block == _ZERO_BLOCK:
            if offset == 0:
                raise _invalid("NEFF payload is an empty tar archive (no sg00/def.json)")
            break
        count += 1
        if count > max_members:
            raise _invalid(f"NEFF payload has more than {max_members} tar members")
        if block[257:263] not in (b"ustar\x00", b"ustar "):
            raise _invalid(f"NEFF payload is not a valid tar archive: no ustar header at byte {offset}")
        checksum = _octal(block[148:156], f"tar header checksum at byte {offset}")
        unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
        signed = unsigned - 256 * sum(1 for c in block[:148] + block[156:] if c & 0x80)  # signed-char sums
        if checksum not in (unsigned, signed):
            raise _invalid(f"NEFF payload is not a valid tar archive: bad header checksum at byte {offset}")
        typeflag = block[156:157]
        if typeflag in _EXTENDED_TYPES:
            raise _invalid(
                f"NEFF payload has a pax/GNU extended header (type {typeflag.decode()!r}) at byte {offset}; "
                "only plain ustar members are accepted"
            )
        name_raw = block[0:100].split(b"\x00", 1)[0]
        prefix = block[345:500].split(b"\x00", 1)[0] if block[257:263] == b"ustar\x00" else b""
        try:
            name = ((prefix + b"/" if prefix else b"") + name_raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(f"NEFF payload has a member name that is not UTF-8 at byte {offset}") from None
        is_dir = typeflag == b"5"
        stripped = name[:-1] if is_dir and name.endswith("/") else name
        _check_member_path(stripped)
        if stripped in files or stripped in dirs:
            raise _invalid(f"NEFF payload has a duplicate member {stripped!r}")
        if typeflag in _LINK_TYPES:
            raise _invalid(f"NEFF payload member {stripped!r} is a link, links are not allowed")
        if not is_dir and typeflag not in _FILE_TYPES:
            raise _invalid(f"NEFF payload member {stripped!r} is not a regular file (tar type {typeflag!r})")
        size = _octal(block[124:136], f"size of member {stripped!r}")
        if size > max_size:
            raise _invalid(
                f"NEFF payload member {stripped!r} is too large: {size} bytes, limit {max_size} bytes"
            )
        total += size
        if total > max_size:
            raise _invalid(f"NEFF payload members total more than the {max_size}-byte limit")
        start = offset + _BLOCK
        if start + size > len(payload):
            raise _invalid(f"NEFF payload member {stripped!r} is truncated")
        if is_dir:
            if size:
                raise _invalid(f"NEFF payload directory {stripped!r} has a size")
            dirs.add(stripped)
        else:
            files[stripped] = payload[start : start + size]
        offset = start + -(-size // _BLOCK) * _BLOCK
    return files, dirs


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def _load_json(raw: memoryview, where: str) -> Any:
    if len(raw) > _MAX_DEF_JSON_BYTES:
        raise _invalid(f"{where} is too large: {len(raw)} bytes, limit {_MAX_DEF_JSON_BYTES}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"{where} is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise _invalid(f"{where} is not valid JSON: nested too deep") from None
    except ValueError as exc:
        raise _invalid(f"{where} is not valid JSON: {exc}") from None


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(f"{what} must be a non-empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _invalid(f"{what} {value!r} contains control characters")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"{what} {value!r} is not valid UTF-8") from None
    if len(encoded) > _MAX_NAME_BYTES:
        raise _invalid(f"{what} is longer than {_MAX_NAME_BYTES} UTF-8 bytes")
    return value


def _check_int(value: Any, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(f"{what} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _invalid(f"{what} is {value}, expected {lo} to {hi}")
    return value


def _check_keys(obj: Any, required: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _invalid(f"{what} must be a JSON object")
    missing = required - obj.keys()
    if missing:
        raise _invalid(f"{what} is missing {', '.join(sorted(missing))}")
    extra = obj.keys() - required
    if extra:
        raise _invalid(f"{what} has unknown key(s) {', '.join(sorted(map(repr, extra)))}")
    return obj


def _check_attr_value(value: Any, what: str, depth: int) -> None:
    if depth > _MAX_ATTR_DEPTH:
        raise _invalid(f"{what} nests deeper than {_MAX_ATTR_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(f"{what} is not a finite number")
        return
    if isinstance(value, list):
        for item in value:
            _check_attr_value(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not key:
                raise _invalid(f"{what} has an empty key")
            _check_attr_value(item, what, depth + 1)
        return
    raise _invalid(f"{what} has an unsupported value of type {type(value).__name__}")


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


_VAR_KEYS = {"name", "type", "dtype", "shape", "size"}
_VAR_EXTRA = {"input": set(), "output": set(), "state-buffer": set(), "file": {"file"}, "virtual": {"offset"}}
_NODE_KEYS = {"name", "op", "inputs", "outputs", "attrs", "executor"}


def _parse_var(entry: Any, where: str, index: int) -> NeffVar:
    what = f"{where}: var[{index}]"
    if not isinstance(entry, dict):
        raise _invalid(f"{what} must be a JSON object")
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in VAR_TYPES:
        raise _invalid(f"{what} has type {kind!r}, expected one of {', '.join(VAR_TYPES)}")
    _check_keys(entry, _VAR_KEYS | _VAR_EXTRA[kind], what)
    name = _check_name(entry["name"], f"{what} name")
    what = f"{where}: var {name!r}"
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _invalid(f"{what} has unknown dtype {dtype!r} (supported: {', '.join(DTYPES)})")
    raw_shape = entry["shape"]
    if not isinstance(raw_shape, list):
        raise _invalid(f"{what} shape must be a JSON array")
    if len(raw_shape) > _MAX_RANK:
        raise _invalid(f"{what} has rank {len(raw_shape)}, at most {_MAX_RANK} is supported")
    shape = tuple(_check_int(d, f"{what} shape dimension", 0, _MAX_DIM) for d in raw_shape)
    size = _check_int(entry["size"], f"{what} size", 0, 2**64 - 1)
    expected = math.prod(shape) * DTYPES[dtype][0].itemsize
    if expected > _MAX_TENSOR_BYTES:
        raise _invalid(f"{what} is too large: {expected} bytes, limit {_MAX_TENSOR_BYTES}")
    if size != expected:
        raise _invalid(f"{what} has size {size} but shape {list(shape)} of {dtype} is {expected} bytes")
    file: str | None = None
    offset: int | None = None
    if kind == "file":
        raw_file = entry["file"]
        if not isinstance(raw_file, str):
            raise _invalid(f"{what} file must be a string")
        _check_member_path(raw_file)
        if len(raw_file.split("/")) > _MAX_PATH_DEPTH or not raw_file.endswith(".npy"):
            raise _invalid(
                f"{what} file {raw_file!r} must be a relative .npy path at most {_MAX_PATH_DEPTH} deep"
            )
        file = raw_file
    if kind == "virtual":
        offset = _check_int(entry["offset"], f"{what} offset", 0, _MAX_TENSOR_BYTES)
    return NeffVar(name=name, kind=kind, dtype=dtype, shape=shape, size=size, file=file, offset=offset)


def _parse_node(entry: Any, where: str, index: int) -> NeffNode:
    what = f"{where}: node[{index}]"
    _check_keys(entry, _NODE_KEYS, what)
    name = _check_name(entry["name"], f"{what} name")
    what = f"{where}: node {name!r}"
    op = _check_name(entry["op"], f"{what} op")
    executor = entry["executor"]
    if not isinstance(executor, str) or executor not in EXECUTORS:
        raise _invalid(f"{what} executor is {executor!r}, expected 'Neuron Core' or 'CPU'")
    lists: list[tuple[str, ...]] = []
    for key in ("inputs", "outputs"):
        raw = entry[key]
        if not isinstance(raw, list):
            raise _invalid(f"{what} {key} must be a JSON array of var names")
        if len(raw) > _MAX_NODE_ARITY:
            raise _invalid(f"{what} has more than {_MAX_NODE_ARITY} {key}")
        lists.append(tuple(_check_name(v, f"{what} {key} entry") for v in raw))
    inputs, outputs = lists
    if not outputs:
        raise _invalid(f"{what} has no outputs")
    if len(set(outputs)) != len(outputs):
        raise _invalid(f"{what} lists an output twice")
    attrs = entry["attrs"]
    if not isinstance(attrs, dict):
        raise _invalid(f"{what} attrs must be a JSON object")
    _check_attr_value(attrs, f"{what} attrs", 1)
    return NeffNode(name=name, op=op, inputs=inputs, outputs=outputs, attrs=_freeze(attrs), executor=executor)


def _parse_def(doc: Any, where: str) -> tuple[tuple[NeffVar, ...], tuple[NeffNode, ...]]:
    """Validate a decoded def.json (structure and data flow) and turn it into vars and nodes."""
    _check_keys(doc, {"schema", "var", "nodes"}, where)
    if doc["schema"] != DEF_SCHEMA_ID:
        raise _invalid(f"{where}: schema is {doc['schema']!r}, expected {DEF_SCHEMA_ID!r}")
    raw_vars, raw_nodes = doc["var"], doc["nodes"]
    if not isinstance(raw_vars, list) or not isinstance(raw_nodes, list):
        raise _invalid(f"{where}: var and nodes must be JSON arrays")
    if len(raw_vars) > _MAX_VARS or len(raw_nodes) > _MAX_NODES:
        raise _invalid(f"{where}: more than {_MAX_VARS} vars or {_MAX_NODES} nodes")
    variables = tuple(_parse_var(e, where, i) for i, e in enumerate(raw_vars))
    nodes = tuple(_parse_node(e, where, i) for i, e in enumerate(raw_nodes))
    by_name: dict[str, NeffVar] = {}
    files: set[str] = set()
    for v in variables:
        if v.name in by_name:
            raise _invalid(f"{where}: var {v.name!r} is declared twice")
        by_name[v.name] = v
        if v.file is not None:
            if v.file in files:
                raise _invalid(f"{where}: file {v.file!r} is used by two vars")
            files.add(v.file)
    if not any(v.kind == "output" for v in variables):
        raise _invalid(f"{where}: the subgraph has no output var")
    available = {v.name for v in variables if v.kind in ("input", "file", "state-buffer")}
    produced: set[str] = set()
    node_names: set[str] = set()
    for node in nodes:
        what = f"{where}: node {node.name!r}"
        if node.name in node_names:
            raise _invalid(f"{what} is declared twice")
        node_names.add(node.name)
        for name in node.inputs:
            if name not in by_name:
                raise _invalid(f"{what} reads unknown var {name!r}")
            if name not in available:
                raise _invalid(f"{what} reads var {name!r} before any node produces it")
        for name in node.outputs:
            var = by_name.get(name)
            if var is None:
                raise _invalid(f"{what} writes unknown var {name!r}")
            if var.kind not in ("output", "virtual", "state-buffer"):
                raise _invalid(f"{what} writes var {name!r} of type {var.kind}, which is read-only")
            if name in produced:
                raise _invalid(f"{what} writes var {name!r}, which another node already produces")
            produced.add(name)
        available.update(node.outputs)
    for v in variables:
        if v.kind == "output" and v.name not in produced:
            raise _invalid(f"{where}: output var {v.name!r} is not produced by any node")
    return variables, nodes


def _npy_header(raw: memoryview, what: str) -> tuple[str, bool, tuple[int, ...], int]:
    """(descr, fortran_order, shape, data offset) of a .npy 1.0/2.0 file, parsed here with strict checks."""
    if len(raw) < 10 or bytes(raw[:6]) != b"\x93NUMPY":
        raise _invalid(f"{what} is not a valid .npy file: bad magic")
    version = (raw[6], raw[7])
    if version == (1, 0):
        (length,), start = struct.unpack_from("<H", raw, 8), 10
    elif version == (2, 0) and len(raw) >= 12:
        (length,), start = struct.unpack_from("<I", raw, 8), 12
    else:
        raise _invalid(f"{what} has .npy format version {version[0]}.{version[1]}, expected 1.0 or 2.0")
    if length > _MAX_NPY_HEADER or start + length > len(raw):
        raise _invalid(f"{what} is not a valid .npy file: header length {length} is out of range")
    text = bytes(raw[start : start + length]).decode("latin1")
    if not _NPY_HEADER_RE.fullmatch(text):
        raise _invalid(
            f"{what} is not a valid .npy file: header has characters outside a Python dict literal"
        )
    try:
        header = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise _invalid(f"{what} is not a valid .npy file: bad header: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise _invalid(f"{what} is not a valid .npy file: header must have descr, fortran_order and shape")
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(fortran, bool) or not isinstance(shape, tuple):
        raise _invalid(f"{what} is not a valid .npy file: bad fortran_order or shape")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _invalid(f"{what} is not a valid .npy file: shape {shape!r} is not a tuple of sizes")
    if not isinstance(descr, str):
        raise _invalid(f"{what} has a structured dtype, expected a plain numeric dtype")
    return descr, fortran, shape, start + length


def _load_constant(raw: memoryview, var: NeffVar, where: str) -> np.ndarray[Any, Any]:
    """Decode one .npy member for ``var``: header checked here first, then ``np.load(allow_pickle=False)``."""
    what = f"{where}: constant {var.file!r} of var {var.name!r}"
    want = DTYPES[var.dtype][1]
    descr, _fortran, shape, data_start = _npy_header(raw, what)
    if descr.lstrip("<>|=").startswith("O"):
        raise _invalid(f"{what} has an object dtype, which is never loaded (no pickles)")
    if descr != want.str:
        raise _invalid(f"{what} has dtype {descr}, expected {want.str} for {var.dtype}")
    if shape != var.shape:
        raise _invalid(f"{what} has shape {list(shape)}, the var says {list(var.shape)}")
    data_bytes = len(raw) - data_start
    if data_bytes != var.size:
        raise _invalid(f"{what} holds {data_bytes} data bytes, expected {var.size}")
    try:
        loaded: Any = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # numpy's parser has an open set of errors; the header is checked
        raise _invalid(f"{what} could not be loaded: {exc}") from None
    if not isinstance(loaded, np.ndarray) or loaded.dtype != want or loaded.shape != var.shape:
        raise _invalid(f"{what} did not load as a {var.dtype} array of shape {list(var.shape)}")
    array: np.ndarray[Any, Any] = loaded
    if not array.flags.c_contiguous:
        array = np.array(array, order="C")
    array = array.view(DTYPES[var.dtype][0])
    array.flags.writeable = False
    return array


def _build_subgraph(name: str, files: Mapping[str, memoryview]) -> tuple[NeffSubgraph, set[str]]:
    where = f"{name}/def.json"
    if where not in files:
        raise _invalid(f"NEFF payload has no {where}")
    variables, nodes = _parse_def(_load_json(files[where], where), where)
    used = {where}
    constants: dict[str, np.ndarray[Any, Any]] = {}
    for var in variables:
        if var.file is None:
            continue
        path = f"{name}/{var.file}"
        if path not in files:
            raise _invalid(f"{where}: var {var.name!r} refers to missing file {path!r}")
        constants[var.name] = _load_constant(files[path], var, name)
        used.add(path)
    subgraph = NeffSubgraph(
        name=name, vars=variables, nodes=nodes, constants=types.MappingProxyType(constants)
    )
    return subgraph, used


def parse_neff(
    data: bytes | bytearray | memoryview,
    *,
    validate_hash: bool = False,
    max_size: int = DEFAULT_MAX_NEFF_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> NeffModel:
    """Parse and fully validate a NEFF held in memory; raise NrtError (INVALID / UNSUPPORTED_NEFF_VERSION).

    ``validate_hash`` checks the header hash against the payload (``NEURON_RT_VALIDATE_HASH``);
    ``max_size`` caps the whole NEFF and therefore every member and their total; ``max_members`` caps the
    number of tar members. Never writes to the filesystem and never unpickles.
    """
    data = bytes(data)
    if len(data) > max_size:
        raise _invalid(f"NEFF is too large: {len(data)} bytes, limit {max_size} bytes")
    header = parse_neff_header(data)
    actual = len(data) - HEADER_SIZE
    if header.data_size != actual:
        raise _invalid(f"NEFF data_size is {header.data_size} but {actual} bytes follow the header")
    if actual == 0:
        raise _invalid("NEFF payload is empty")
    payload = memoryview(data)[HEADER_SIZE:]
    if validate_hash:
        if header.pkg_version >= 3:
            algo, digest = "sha256", hashlib.sha256(payload).digest()
        else:
            algo, digest = "md5", hashlib.md5(payload, usedforsecurity=False).digest()
        stored = header.hash[: len(digest)]
        if stored != digest:
            raise _invalid(f"NEFF hash mismatch: header {algo} {stored.hex()} payload {algo} {digest.hex()}")
    files, dirs = _read_members(payload, max_size, max_members)
    names: set[str] = set()
    for path in files:
        top = path.split("/", 1)[0]
        if not _SUBGRAPH_RE.fullmatch(top) or "/" not in path:
            raise _invalid(f"NEFF payload has unexpected member {path!r} (expected sgNN/...)")
        names.add(top)
    count = len(names)
    expected_names = {f"sg{i:02d}" for i in range(count)}
    if names != expected_names:
        raise _invalid(f"NEFF subgraphs must be sg00..sg{count - 1:02d} without gaps, found {sorted(names)}")
    for path in sorted(dirs):
        if path.split("/", 1)[0] not in names:
            raise _invalid(f"NEFF payload has unexpected directory {path!r} (expected sgNN/...)")
    if count != header.num_tpb:
        raise _invalid(f"NEFF header num_tpb is {header.num_tpb} but the payload holds {count} subgraph(s)")
    subgraphs: list[NeffSubgraph] = []
    used: set[str] = set()
    for i in range(count):
        sg, sg_used = _build_subgraph(f"sg{i:02d}", files)
        subgraphs.append(sg)
        used |= sg_used
    for path in sorted(files):
        if path not in used:
            raise _invalid(
                f"NEFF payload has unexpected member {path!r} (not def.json or a referenced constant)"
            )
    first = subgraphs[0]
    sig_in = [(v.name, v.dtype, v.shape) for v in first.inputs]
    sig_out = [(v.name, v.dtype, v.shape) for v in first.outputs]
    for sg in subgraphs[1:]:
        if [(v.name, v.dtype, v.shape) for v in sg.inputs] != sig_in or [
            (v.name, v.dtype, v.shape) for v in sg.outputs
        ] != sig_out:
            raise _invalid(f"NEFF subgraph {sg.name} declares different inputs/outputs than sg00")
    return NeffModel(header=header, subgraphs=tuple(subgraphs))


def read_neff(
    path: str | os.PathLike[str],
    *,
    validate_hash: bool = False,
    max_size: int = DEFAULT_MAX_NEFF_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> NeffModel:
    """Read a NEFF file (size checked before reading) and :func:`parse_neff` it; I/O errors are NRT_INVALID."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_size:
                raise _invalid(f"NEFF is too large: {size} bytes, limit {max_size} bytes")
            data = fh.read(max_size + 1)
    except OSError as exc:
        raise _invalid(f"cannot read NEFF {os.fspath(path)!r}: {exc.strerror or exc}") from None
    return parse_neff(data, validate_hash=validate_hash, max_size=max_size, max_members=max_members)
