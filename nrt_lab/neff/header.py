"""The 1024-byte NEFF header of docs/behaviour.md §8: layout, versions, hash, pack and parse.

The header is the ``neff_header_t`` of the public docs, little-endian, packed with no implicit padding
(:data:`HEADER_FORMAT`; the field sizes add up to exactly 1024 bytes, so ``pad`` is the documented 468)::

    u64 pkg_version, header_size, data_size, neff_version_major, neff_version_minor;
    u8 neff_build_version[128]; u32 num_tpb; u8 hash[32]; u8 uuid[16]; char name[256];
    u32 requested_tpb_count; u8 tpb_per_node[64]; u64 feature_bits; u32 lnc_size; u8 pad[468]

nrt_lab's choices where the docs are silent (docs/behaviour.md):

* ``pkg_version`` is written as :data:`PKG_VERSION` (3) and ``hash`` is the sha256 of the payload. The docs say
  the hash is "sha256 or md5 depending on pkg_version" and the one public sample (pkg_version 2) carries a
  16-byte hash, so pkg_version 1 and 2 are read as md5 in the first 16 bytes of ``hash``.
* ``num_tpb`` is the number of subgraphs in the payload; ``tpb_per_node[0]`` is that number too (our single
  Neuron Core node spans every subgraph) and the other bytes are zero. ``requested_tpb_count`` is the number of
  (logical) NeuronCores the model asks for; ``lnc_size`` is 1 or 2.
* ``feature_bits`` must be 0: no optional features are emulated, so a NEFF asking for any is refused with
  NRT_UNSUPPORTED_NEFF_VERSION, like a runtime too old for it.
* ``name`` and ``neff_build_version`` are NUL-terminated UTF-8; ``pad`` is ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.neff._common import MAX_NAME_BYTES, invalid

__all__ = [
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "MAX_SUBGRAPHS",
    "PKG_VERSION",
    "SUPPORTED_NEFF_VERSION",
    "RUNTIME_1X_NEFF_VERSION",
    "NeffHeader",
    "check_neff_version",
    "parse_neff_header",
    "payload_digest",
]

HEADER_SIZE = 1024
"""Bytes in the NEFF header (``header_size`` must hold exactly this)."""

HEADER_FORMAT = "<5Q128sI32s16s256sI64sQI468s"
"""``struct`` layout of the header, field by field in docs/behaviour.md §8 order, little-endian, no implicit padding."""

_HEADER = struct.Struct(HEADER_FORMAT)
assert _HEADER.size == HEADER_SIZE, "NEFF header layout must be exactly 1024 bytes"

PKG_VERSION = 3
"""``pkg_version`` nrt_lab writes: 3 = the header hash is the sha256 of the payload (1, 2 = md5, read only)."""

SUPPORTED_NEFF_VERSION: tuple[int, int] = (2, 0)
"""Newest NEFF (major, minor) the emulated runtime 2.x loads; every older version (0.6, 1.0, …) loads too."""

RUNTIME_1X_NEFF_VERSION: tuple[int, int] = (1, 1)
"""Newest NEFF (major, minor) the Runtime 1.x daemon neuron-rtd loads: models compiled for 1.x run on both runtimes."""

MAX_SUBGRAPHS = 64
"""Most subgraphs a NEFF may hold (``tpb_per_node`` has 64 entries)."""


def check_neff_version(major: int, minor: int) -> None:
    """Raise NRT_UNSUPPORTED_NEFF_VERSION with docs/behaviour.md §8's message if the runtime cannot load this NEFF version."""
    if (major, minor) > SUPPORTED_NEFF_VERSION:
        s_major, s_minor = SUPPORTED_NEFF_VERSION
        raise NrtError(
            NrtStatus.UNSUPPORTED_NEFF_VERSION,
            f"NEFF version mismatch supported: {s_major}.{s_minor} received: {major}.{minor}",
        )


def payload_digest(pkg_version: int, payload: bytes | memoryview) -> tuple[str, bytes]:
    """(algorithm, digest) of the header hash for this ``pkg_version``: sha256 from 3 on, md5 for 1 and 2."""
    if pkg_version >= 3:
        return "sha256", hashlib.sha256(payload).digest()
    return "md5", hashlib.md5(payload, usedforsecurity=False).digest()


@dataclasses.dataclass(frozen=True)
class NeffHeader:
    """The decoded 1024-byte NEFF header (docs/behaviour.md §8); ``pack()`` writes it back byte for byte (pad as zeros)."""

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
        if len(name) > MAX_NAME_BYTES or "\x00" in self.name:
            raise invalid(f"NEFF name must be at most {MAX_NAME_BYTES} UTF-8 bytes without NUL")
        if len(build) > 127 or "\x00" in self.build_version:
            raise invalid("NEFF build version must be at most 127 UTF-8 bytes without NUL")
        if len(self.hash) != 32 or len(self.uuid) != 16 or len(self.tpb_per_node) != 64:
            raise invalid("NEFF header hash/uuid/tpb_per_node must be 32/16/64 bytes")
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
            raise invalid(f"NEFF header field out of range: {exc}") from None


def _hash_len(pkg_version: int) -> int:
    return 32 if pkg_version >= 3 else 16

def _cstring(raw: bytes, what: str) -> str:
    end = raw.find(b"\x00")
    if end < 0:
        raise invalid(f"NEFF {what} is not NUL-terminated")
    try:
        return raw[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"NEFF {what} is not valid UTF-8") from None


def parse_neff_header(data: bytes) -> NeffHeader:
    """Decode and check the header alone (no payload checks): enough for ``neuron-packager info``-like tools."""
    if len(data) < HEADER_SIZE:
        raise invalid(f"NEFF is too short: {len(data)} bytes, the header alone is {HEADER_SIZE} bytes")
    fields = _HEADER.unpack_from(data, 0)
    (pkg, hsize, dsize, major, minor, build, num_tpb, digest, uuid, name, req, per_node, feats, lnc, _pad) = (
        fields
    )
    if hsize != HEADER_SIZE:
        raise invalid(f"NEFF header_size is {hsize}, expected {HEADER_SIZE}")
    check_neff_version(major, minor)
    if feats != 0:
        raise NrtError(
            NrtStatus.UNSUPPORTED_NEFF_VERSION,
            f"NEFF requires features this runtime does not support: feature_bits 0x{feats:x}",
        )
    if pkg not in (1, 2, 3):
        raise invalid(f"NEFF pkg_version {pkg} is not supported (expected 1, 2 or 3)")
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
        raise invalid(f"NEFF lnc_size is {lnc}, expected 1 or 2")
    if req == 0:
        raise invalid("NEFF requested_tpb_count is 0, at least 1 NeuronCore must be requested")
    if not 1 <= num_tpb <= MAX_SUBGRAPHS:
        raise invalid(f"NEFF num_tpb is {num_tpb}, expected 1 to {MAX_SUBGRAPHS}")
    return header

