"""Hypothesis fuzzing of :func:`nrt_lab.neff.parse_neff` and the file reader :func:`nrt_lab.neff.read_neff`:
random bytes and mutations of valid NEFFs.

Whatever the input, parsing either succeeds or raises ``NrtError`` with NRT_INVALID or
NRT_UNSUPPORTED_NEFF_VERSION, and each parse stays bounded in time. ``NRT_LAB_FUZZ_EXAMPLES`` sets the number
of examples per test (default 200, kept short for CI; run with 10000 for a real campaign).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.neff import HEADER_SIZE, GraphBuilder, build_payload, parse_neff, read_neff

EXAMPLES = int(os.environ.get("NRT_LAB_FUZZ_EXAMPLES", "200"))
MAX_SECONDS = 5.0
ALLOWED = {NrtStatus.INVALID, NrtStatus.UNSUPPORTED_NEFF_VERSION}

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def _graph() -> GraphBuilder:
    g = GraphBuilder(name="fuzz")
    x = g.input("x", "float32", (2, 3))
    w = g.constant("w", np.arange(12, dtype=np.float32).reshape(3, 4))
    b = g.constant("b", np.ones(4, dtype=ml_dtypes.bfloat16))
    y = g.op("matmul", [x, w])
    y = g.op("add", [y, g.op("cast", [b], {"dtype": "float32"}, shape=(4,), dtype="float32")], executor="CPU")
    g.output("y", g.op("relu", [y]))
    return g


BASE = _graph().build(uuid="00112233445566778899aabbccddeeff")
BASE_LNC2 = _graph().build(lnc=2, requested_cores=2, subgraphs=2)
BASES = [BASE, BASE_LNC2]


def _members(neff: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(neff[HEADER_SIZE:]), mode="r:") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            out[member.name] = handle.read()
    return out


MEMBERS = _members(BASE)
DEF_DOC: dict[str, Any] = _graph().definition()

# (offset, struct format) of every numeric header field; byte fields are mutated by the bit flips.
HEADER_FIELDS = [(0, "<Q"), (8, "<Q"), (16, "<Q"), (24, "<Q"), (32, "<Q"), (168, "<I"), (476, "<I"), (544, "<Q"),
                 (552, "<I")]  # fmt: skip


def check(data: bytes, **kwargs: Any) -> None:
    """Parse and assert the only outcomes are success or an allowed NrtError, in bounded time."""
    start = time.perf_counter()
    try:
        parse_neff(data, **kwargs)
    except NrtError as exc:
        assert exc.status in ALLOWED, exc
    elapsed = time.perf_counter() - start
    assert elapsed < MAX_SECONDS, f"parse took {elapsed:.2f}s"


def wrap(payload: bytes, version: tuple[int, int] = (2, 0), num_tpb: int = 1) -> bytes:
    """A header that is valid for ``payload`` (size and hash fixed up), so fuzzing reaches the payload."""
    header = bytearray(BASE[:HEADER_SIZE])
    struct.pack_into("<Q", header, 16, len(payload))
    struct.pack_into("<QQ", header, 24, *version)
    struct.pack_into("<I", header, 168, num_tpb)
    header[172:204] = hashlib.sha256(payload).digest()
    return bytes(header) + payload


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


# ------------------------------------------------------------------------------------------------ (a) random bytes


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(max_size=4096), st.booleans())
def test_random_payload_behind_valid_header(payload: bytes, validate_hash: bool) -> None:
    check(wrap(payload), validate_hash=validate_hash)


# ------------------------------------------------------------------------------------------------ (b) mutations


@FUZZ
@given(
    st.sampled_from(BASES),
    st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 7)), min_size=1, max_size=8),
    st.booleans(),
    st.booleans(),
)
def test_bit_flips(base: bytes, flips: list[tuple[int, int]], fix_header: bool, validate_hash: bool) -> None:
    data = bytearray(base)
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    out = bytes(data)
    if fix_header:
        out = wrap(out[HEADER_SIZE:], num_tpb=struct.unpack_from("<I", base, 168)[0])
    check(out, validate_hash=validate_hash)


@FUZZ
@given(st.sampled_from(BASES), st.integers(0, 2**31), st.booleans())
def test_truncations(base: bytes, cut: int, fix_header: bool) -> None:
    data = base[: cut % (len(base) + 1)]
    if fix_header and len(data) >= HEADER_SIZE:
        data = wrap(data[HEADER_SIZE:])
    check(data)


@FUZZ
@given(st.sampled_from(BASES), st.sampled_from(HEADER_FIELDS), st.integers(0, 2**64 - 1), st.booleans())
def test_header_field_changes(base: bytes, field: tuple[int, str], value: int, small: bool) -> None:
    offset, fmt = field
    limit = 2 ** (8 * struct.calcsize(fmt))
    value = value % 8 if small else value % limit
    data = bytearray(base)
    struct.pack_into(fmt, data, offset, value)
    check(bytes(data), validate_hash=True)


@FUZZ
@given(st.sampled_from(sorted(MEMBERS)), st.binary(max_size=2048), st.text(max_size=40))
def test_member_replaced_by_random_bytes(member: str, content: bytes, extra_name: str) -> None:
    members = dict(MEMBERS)
    members[member] = content
    check(wrap(build_payload(members)))
    safe = "".join(c for c in extra_name if c.isascii() and c.isprintable()) or "x"
    members[safe] = content
    try:
        payload = build_payload(members)
    except (ValueError, UnicodeError):
        return
    check(wrap(payload))


@FUZZ
@given(
    st.sampled_from(sorted(MEMBERS)[1:]),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=6),
)
def test_npy_byte_mutations(member: str, edits: list[tuple[int, int]]) -> None:
    members = dict(MEMBERS)
    raw = bytearray(members[member])
    for position, value in edits:
        raw[position % len(raw)] = value
    members[member] = bytes(raw)
    check(wrap(build_payload(members)))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


DEF_PATHS = _paths(DEF_DOC)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(DEF_PATHS), json_values), min_size=1, max_size=3))
def test_def_json_subtrees_replaced(edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc: Any = json.loads(json.dumps(DEF_DOC))
    for path, value in edits:
        if not path:
            doc = value
            continue
        target = doc
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    members = dict(MEMBERS)
    members["sg00/def.json"] = json.dumps(doc).encode()
    check(wrap(build_payload(members)))


def _tar_header_offsets(payload: bytes) -> list[int]:
    offsets, offset = [], 0
    while payload[offset : offset + 512] != bytes(512):
        offsets.append(offset)
        size = int(payload[offset + 124 : offset + 136].strip(b"\0 ") or b"0", 8)
        offset += 512 + -(-size // 512) * 512
    return offsets


TAR_HEADERS = _tar_header_offsets(BASE[HEADER_SIZE:])


@FUZZ
@given(
    st.sampled_from(TAR_HEADERS),
    st.lists(st.tuples(st.integers(0, 511).filter(lambda i: not 148 <= i < 156), st.binary(min_size=1, max_size=12)),
             min_size=1, max_size=4),
)  # fmt: skip
def test_tar_header_fields_with_fixed_checksum(header_at: int, edits: list[tuple[int, bytes]]) -> None:
    payload = bytearray(BASE[HEADER_SIZE:])
    block = bytearray(payload[header_at : header_at + 512])
    for position, value in edits:
        chunk = value[: 512 - position]
        block[position : position + len(chunk)] = chunk
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
    payload[header_at : header_at + 512] = block
    check(wrap(bytes(payload)))


# ------------------------------------------------------------------------------------------------ the file reader


@FUZZ
@given(
    st.sampled_from(BASES),
    st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=6),
    st.integers(0, 2**31),
    st.booleans(),
)
def test_read_neff_on_mutated_files(base: bytes, edits: list[tuple[int, int]], max_size: int, link: bool) -> None:
    """The path entry point (what Model.load, nrtpy and neff inspect use): success or an allowed NrtError."""
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.neff"
        path.write_bytes(bytes(data))
        if link:  # users load models through symbolic links: followed to the regular file
            (Path(directory) / "link.neff").symlink_to(path)
            path = Path(directory) / "link.neff"
        start = time.perf_counter()
        try:
            read_neff(path, max_size=max_size)
        except NrtError as exc:
            assert exc.status in ALLOWED, exc
        assert time.perf_counter() - start < MAX_SECONDS
