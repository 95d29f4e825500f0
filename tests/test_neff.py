"""NEFF format: builder round trips, the docs/behaviour.md §8 header layout, every malformed case, the inspect listing."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.neff import (
    DEF_JSON_SCHEMA,
    HEADER_SIZE,
    SUPPORTED_NEFF_VERSION,
    GraphBuilder,
    NeffHeader,
    TensorInfo,
    build_payload,
    describe_neff,
    format_neff_nodes,
    parse_neff,
    parse_neff_header,
    read_neff,
    write_neff,
)

UUID = "0123456789abcdef0123456789abcdef"


# ------------------------------------------------------------------------------------------------ helpers


def add_graph() -> GraphBuilder:
    g = GraphBuilder(name="add")
    a = g.input("a_input", dtype="float16", shape=(4, 3))
    b = g.input("b_input", dtype="float16", shape=(4, 3))
    g.output("output0", g.op("add", [a, b], attrs={}))
    return g


def const_graph() -> GraphBuilder:
    """A graph with constants of every interesting dtype, a CPU op and a multi-output op."""
    g = GraphBuilder(name="consts")
    x = g.input("x", dtype="float32", shape=(2, 3))
    w32 = g.constant("w/fp32:0", np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    w16 = g.constant("w_fp16", np.linspace(-2, 2, 6, dtype=np.float16).reshape(2, 3))
    wbf = g.constant(
        "w_bf16", (np.arange(6, dtype=np.float32) - 2.5).astype(ml_dtypes.bfloat16).reshape(2, 3)
    )
    g.constant("w_i8", np.array([-128, -1, 0, 1, 127], dtype=np.int8))
    g.constant("w_i32", np.array([[2**31 - 1, -(2**31)]], dtype=np.int32))
    g.constant("w_fp8", np.array([0.5, -1.0, 448.0], dtype=ml_dtypes.float8_e4m3fn))
    g.constant("scalar", np.float32(3.0))
    h = g.op("mul", [x, g.op("cast", [w16], {"dtype": "float32"}, shape=(2, 3), dtype="float32")])
    h = g.op("add", [h, g.op("cast", [wbf], {"dtype": "float32"}, shape=(2, 3), dtype="float32")], executor="CPU")
    y = g.op("matmul", [h, w32])
    lo, hi = g.multi_op("split", [y], [((2, 2), "float32"), ((2, 2), "float32")], {"axis": 1})
    g.output("lo", lo)
    g.output("hi", g.op("relu", [hi]))
    return g


def wrap(payload: bytes, **fields: Any) -> bytes:
    """A NEFF around ``payload`` with a correct header unless ``fields`` override some of it."""
    values: dict[str, Any] = {
        "pkg_version": 3,
        "header_size": HEADER_SIZE,
        "data_size": len(payload),
        "neff_version_major": 2,
        "neff_version_minor": 0,
        "build_version": "test",
        "num_tpb": 1,
        "hash": hashlib.sha256(payload).digest(),
        "uuid": bytes.fromhex(UUID),
        "name": "hand-made",
        "requested_tpb_count": 1,
        "tpb_per_node": bytes([1]).ljust(64, b"\0"),
        "feature_bits": 0,
        "lnc_size": 1,
    }
    values.update(fields)
    return NeffHeader(**values).pack() + payload


def def_doc(g: GraphBuilder | None = None) -> dict[str, Any]:
    return (g or add_graph()).definition()


def neff_with_def(doc: Any, extra: dict[str, bytes] | None = None, raw: bytes | None = None) -> bytes:
    data = raw if raw is not None else json.dumps(doc).encode()
    return wrap(build_payload({"sg00/def.json": data, **(extra or {})}))


def tar_header(name: str, size: int, typeflag: bytes = b"0", linkname: str = "") -> bytes:
    """One raw ustar header block with a correct checksum (for members tarfile refuses to write)."""
    block = bytearray(512)
    block[0:100] = name.encode().ljust(100, b"\0")
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = f"{size:011o}".encode() + b"\0"
    block[136:148] = b"00000000000\0"
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:257] = linkname.encode().ljust(100, b"\0")
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
    return bytes(block)


def raw_tar(*entries: tuple[str, bytes, bytes, str]) -> bytes:
    out = b""
    for name, data, typeflag, link in entries:
        out += tar_header(name, len(data), typeflag, link) + data + b"\0" * (-len(data) % 512)
    return out + b"\0" * 1024


def expect_invalid(data: bytes, *needles: str, **kwargs: Any) -> NrtError:
    with pytest.raises(NrtError) as info:
        parse_neff(data, **kwargs)
    assert info.value.status == NrtStatus.INVALID, info.value
    for needle in needles:
        assert needle in info.value.message, (needle, info.value.message)
    return info.value


def npy_bytes(array: np.ndarray[Any, Any], allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ round trips


def test_add_graph_round_trip() -> None:
    data = add_graph().build(neff_version=(2, 0), lnc=1, requested_cores=1, subgraphs=1, uuid=UUID)
    model = parse_neff(data, validate_hash=True)
    assert model.name == "add"
    assert model.uuid == UUID
    assert model.neff_version == (2, 0)
    assert model.lnc == 1 and model.requested_cores == 1 and model.num_tpb == 1
    assert model.hash == hashlib.sha256(data[HEADER_SIZE:]).hexdigest()
    assert model.input_infos() == (
        TensorInfo("a_input", "float16", (4, 3), 24),
        TensorInfo("b_input", "float16", (4, 3), 24),
    )
    assert model.output_infos() == (("output0", "float16", (4, 3), 24),)
    (sg,) = model.subgraphs
    assert sg.name == "sg00"
    (node,) = sg.nodes
    assert (node.op, node.inputs, node.outputs, dict(node.attrs), node.executor) == (
        "add",
        ("a_input", "b_input"),
        ("output0",),
        {},
        "Neuron Core",
    )


def test_build_is_deterministic_but_uuid_random_by_default() -> None:
    assert add_graph().build(uuid=UUID) == add_graph().build(uuid=UUID)
    assert parse_neff(add_graph().build()).uuid != parse_neff(add_graph().build()).uuid


def test_constants_round_trip_bit_exact() -> None:
    g = const_graph()
    expected = {rec.name: rec.array for rec in g._vars if rec.kind == "file"}
    model = parse_neff(g.build(uuid=UUID), validate_hash=True)
    consts = model.subgraphs[0].constants
    assert set(consts) == set(expected)
    for name, want in expected.items():
        got = consts[name]
        assert want is not None
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name
        assert not got.flags.writeable
    assert consts["w_bf16"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert model.output_infos() == (("lo", "float32", (2, 2), 16), ("hi", "float32", (2, 2), 16))
    executors = {n.name: n.executor for n in model.subgraphs[0].nodes}
    assert executors["add_3"] == "CPU"
    assert model.subgraphs[0].var("w/fp32:0").file == "constants/0000_w_fp32_0.npy"


def test_lnc2_two_subgraphs_and_state_buffer() -> None:
    g = GraphBuilder(name="kv")
    x = g.input("x", "bfloat16", (1, 8))
    cache = g.state_buffer("cache", "bfloat16", (4, 8))
    y = g.op("concat", [cache, x], {"axis": 0})
    g.op("copy", [y], shape=(4, 8), out=cache, name="update")
    g.output("y", g.op("reduce_sum", [y], {"axes": 1, "keepdims": True}))
    model = parse_neff(g.build(lnc=2, requested_cores=2, subgraphs=2, uuid=UUID))
    assert [sg.name for sg in model.subgraphs] == ["sg00", "sg01"]
    assert model.lnc == 2 and model.requested_cores == 2 and model.num_tpb == 2
    assert model.output_infos() == (("y", "bfloat16", (5, 1), 10),)
    sg = model.subgraphs[1]
    assert sg.var("cache").kind == "state-buffer"
    assert sg.var("concat_0:0").offset == 0 and sg.var("concat_0:0").shape == (5, 8)
    assert sg.scratchpad_size == 80  # the only virtual var: offset 0 + 5*8 bf16


def test_older_neff_versions_load() -> None:
    for version in [(0, 6), (1, 0), (1, 9), SUPPORTED_NEFF_VERSION]:
        assert parse_neff(add_graph().build(neff_version=version)).neff_version == version


def test_shape_inference() -> None:
    g = GraphBuilder()
    a = g.input("a", "float32", (5, 1, 3))
    b = g.input("b", "float32", (4, 3))
    assert g.op("sub", [a, b]).shape == (5, 4, 3)
    assert g.op("matmul", [b, g.input("c", "float32", (3, 7))]).shape == (4, 7)
    assert g.op("matmul", [a, g.input("v", "float32", (3,))]).shape == (5, 1)
    assert g.op("transpose", [a]).shape == (3, 1, 5)
    assert g.op("transpose", [a], {"perm": [0, 2, 1]}).shape == (5, 3, 1)
    assert g.op("reshape", [a], {"shape": [-1, 5]}).shape == (3, 5)
    assert g.op("reduce_mean", [a]).shape == ()
    assert g.op("cast", [a], {"dtype": "int8"}, shape=(5, 1, 3), dtype="int8").dtype == "int8"
    assert g.op("softmax", [b]).shape == (4, 3)
    assert g.op("custom", [b], shape=(2,), dtype="int32").shape == (2,)
    with pytest.raises(NrtError, match="cannot infer the output shape/dtype of op 'custom'"):
        g.op("custom", [b])
    with pytest.raises(NrtError, match="do not broadcast"):
        g.op("add", [a, g.input("z", "float32", (2,))])
    with pytest.raises(NrtError, match="must share one dtype"):
        g.op("add", [b, g.input("h", "float16", (4, 3))])


def test_builder_errors() -> None:
    g = GraphBuilder()
    a = g.input("a", "float32", (2,))
    with pytest.raises(NrtError, match="already used"):
        g.input("a", "float32", (2,))
    with pytest.raises(NrtError, match="unknown dtype 'float64'"):
        g.input("b", np.float64, (2,))
    with pytest.raises(NrtError, match="must be an op result"):
        g.output("out", a)
    with pytest.raises(NrtError, match="not a Var of graph"):
        g.op("relu", [GraphBuilder().input("x", "float32", (2,))])
    with pytest.raises(NrtError, match="no output var"):
        g.build()
    g.output("out", g.op("relu", [a]))
    with pytest.raises(NrtError, match="lnc is 3"):
        g.build(lnc=3)
    with pytest.raises(NrtError, match="at least 1 NeuronCore"):
        g.build(requested_cores=0)
    with pytest.raises(NrtError, match="subgraphs is 65"):
        g.build(subgraphs=65)
    with pytest.raises(NrtError, match="object") as info:
        GraphBuilder().constant("o", np.array([object()]))
    assert info.value.status == NrtStatus.INVALID


def test_def_json_matches_published_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(json.dumps(DEF_JSON_SCHEMA))
    jsonschema.Draft202012Validator.check_schema(schema)
    for g in (add_graph(), const_graph()):
        jsonschema.validate(g.definition(), schema)
    bad = def_doc()
    bad["var"][0]["extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_write_and_read_file(tmp_path: Path) -> None:
    path = tmp_path / "add.neff"
    data = add_graph().build(uuid=UUID)
    write_neff(path, data)
    assert path.read_bytes() == data
    assert read_neff(path, validate_hash=True).name == "add"
    assert os.listdir(tmp_path) == ["add.neff"]
    with pytest.raises(NrtError, match="too large") as info:
        read_neff(path, max_size=1000)
    assert info.value.status == NrtStatus.INVALID
    with pytest.raises(NrtError, match="cannot read NEFF"):
        read_neff(tmp_path / "missing.neff")


def test_parse_never_touches_the_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("extraction attempted")

    neff = const_graph().build()
    monkeypatch.setattr(tarfile.TarFile, "__init__", refuse)  # the reader has its own in-memory ustar parser
    monkeypatch.setattr(np, "save", refuse)
    monkeypatch.chdir(tmp_path)
    parse_neff(neff, validate_hash=True)
    expect_invalid(wrap(raw_tar(("../escape", b"x", b"0", ""))), "path traversal")
    expect_invalid(wrap(raw_tar(("sg00/link", b"", b"2", "/etc/passwd"))), "link")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------ header layout


def test_header_layout_field_by_field() -> None:
    g = add_graph()
    data = g.build(
        neff_version=(1, 0), lnc=2, requested_cores=4, subgraphs=2, uuid=UUID, build_version="b1.2"
    )
    payload = data[HEADER_SIZE:]

    def u64(offset: int) -> int:
        return int(struct.unpack_from("<Q", data, offset)[0])

    def u32(offset: int) -> int:
        return int(struct.unpack_from("<I", data, offset)[0])

    assert u64(0) == 3  # pkg_version
    assert u64(8) == 1024  # header_size
    assert u64(16) == len(payload) == len(data) - 1024  # data_size
    assert (u64(24), u64(32)) == (1, 0)  # neff_version_major, neff_version_minor
    assert data[40:168] == b"b1.2".ljust(128, b"\0")  # neff_build_version[128]
    assert u32(168) == 2  # num_tpb
    assert data[172:204] == hashlib.sha256(payload).digest()  # hash[32]
    assert data[204:220] == bytes.fromhex(UUID)  # uuid[16]
    assert data[220:476] == b"add".ljust(256, b"\0")  # name[256]
    assert u32(476) == 4  # requested_tpb_count
    assert data[480:544] == bytes([2]) + bytes(63)  # tpb_per_node[64]
    assert u64(544) == 0  # feature_bits
    assert u32(552) == 2  # lnc_size
    assert data[556:1024] == bytes(468)  # pad[468]
    assert tarfile.open(fileobj=io.BytesIO(payload)).getnames() == [
        "sg00/def.json",
        "sg01/def.json",
    ]
    header = parse_neff_header(data)
    assert header.pack() == data[:HEADER_SIZE]


# ------------------------------------------------------------------------------------------------ versions


@pytest.mark.parametrize(("version", "text"), [((3, 1), "3.1"), ((2, 1), "2.1"), ((17, 0), "17.0")])
def test_version_mismatch_exact_message(version: tuple[int, int], text: str) -> None:
    with pytest.raises(NrtError) as info:
        parse_neff(add_graph().build(neff_version=version))
    assert info.value.status == NrtStatus.UNSUPPORTED_NEFF_VERSION
    assert info.value.message == f"NEFF version mismatch supported: 2.0 received: {text}"
    assert str(info.value) == f"NRT Error NRT_UNSUPPORTED_NEFF_VERSION(10): {info.value.message}"


def test_feature_bits_refused() -> None:
    with pytest.raises(NrtError, match="feature_bits 0x4") as info:
        parse_neff(add_graph().build(feature_bits=4))
    assert info.value.status == NrtStatus.UNSUPPORTED_NEFF_VERSION


# ------------------------------------------------------------------------------------------------ hash


def test_hash_validation() -> None:
    data = bytearray(add_graph().build(uuid=UUID))
    data[172] ^= 0xFF
    parse_neff(bytes(data))  # not checked by default, like NEURON_RT_VALIDATE_HASH=false
    err = expect_invalid(
        bytes(data), "NEFF hash mismatch: header sha256 ", " payload sha256 ", validate_hash=True
    )
    assert hashlib.sha256(bytes(data[HEADER_SIZE:])).hexdigest() in err.message


def test_md5_hash_for_old_package_versions() -> None:
    data = add_graph().build(pkg_version=2)
    model = parse_neff(data, validate_hash=True)
    assert model.hash == hashlib.md5(data[HEADER_SIZE:]).hexdigest()
    broken = data[:172] + bytes(16) + data[188:]
    expect_invalid(broken, "NEFF hash mismatch: header md5 ", validate_hash=True)


# ------------------------------------------------------------------------------------------------ malformed: header


def patch(data: bytes, offset: int, fmt: str, value: Any) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.fixture
def good() -> bytes:
    return add_graph().build(uuid=UUID)


def test_too_short(good: bytes) -> None:
    expect_invalid(b"", "too short: 0 bytes")
    expect_invalid(good[:1000], "too short: 1000 bytes")


def test_too_large(good: bytes) -> None:
    expect_invalid(good, "NEFF is too large", max_size=2000)


def test_header_size(good: bytes) -> None:
    expect_invalid(patch(good, 8, "<Q", 512), "header_size is 512, expected 1024")


def test_data_size_mismatch(good: bytes) -> None:
    n = len(good) - HEADER_SIZE
    expect_invalid(patch(good, 16, "<Q", n + 1), f"data_size is {n + 1} but {n} bytes follow")
    expect_invalid(good + b"\0", f"data_size is {n} but {n + 1} bytes follow")
    expect_invalid(good[:-1], "data_size")
    expect_invalid(wrap(b""), "payload is empty")


def test_header_strings(good: bytes) -> None:
    bad_name = good[:220] + b"\xff\xfe" + good[222:]
    expect_invalid(bad_name, "NEFF name is not valid UTF-8")
    expect_invalid(good[:220] + b"x" * 256 + good[476:], "NEFF name is not NUL-terminated")
    expect_invalid(good[:40] + b"\xc3" + good[41:], "NEFF build version is not valid UTF-8")


def test_header_numbers(good: bytes) -> None:
    expect_invalid(patch(good, 552, "<I", 3), "lnc_size is 3, expected 1 or 2")
    expect_invalid(patch(good, 552, "<I", 0), "lnc_size is 0")
    expect_invalid(patch(good, 476, "<I", 0), "requested_tpb_count is 0")
    expect_invalid(patch(good, 168, "<I", 0), "num_tpb is 0")
    expect_invalid(patch(good, 168, "<I", 2), "num_tpb is 2 but the payload holds 1 subgraph(s)")
    expect_invalid(patch(good, 0, "<Q", 7), "pkg_version 7")


# ------------------------------------------------------------------------------------------------ malformed: tar


def test_payload_not_a_tar() -> None:
    expect_invalid(
        wrap(b"hello, this is not a tar" * 40), "not a valid tar archive: no ustar header at byte 0"
    )
    expect_invalid(wrap(b"tiny"), "truncated at byte 0")
    no_end = build_payload({"sg00/def.json": b"{}"})[:1024]
    expect_invalid(wrap(no_end), "no end-of-archive marker")
    expect_invalid(wrap(bytes(2048)), "empty tar archive")
    gz = io.BytesIO()
    with tarfile.open(fileobj=gz, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("sg00/def.json"), io.BytesIO(b""))
    expect_invalid(wrap(gz.getvalue()), "gzip-compressed")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("../evil", "path traversal"),
        ("sg00/../../evil", "path traversal"),
        ("sg00/./def.json", "path traversal"),
        ("/etc/passwd", "absolute path"),
        ("sg00//def.json", "empty path component"),
        ("sg00\\def.json", "backslash"),
        ("sg00/a b.npy", "characters outside"),
    ],
)
def test_unsafe_paths(name: str, needle: str) -> None:
    expect_invalid(wrap(raw_tar((name, b"{}", b"0", ""))), needle)


@pytest.mark.parametrize(
    ("typeflag", "link", "needle"),
    [
        (b"2", "../../etc/passwd", "is a link"),
        (b"1", "sg00/def.json", "is a link"),
        (b"3", "", "not a regular file"),
        (b"4", "", "not a regular file"),
        (b"6", "", "not a regular file"),
    ],
)
def test_links_and_devices(typeflag: bytes, link: str, needle: str) -> None:
    expect_invalid(wrap(raw_tar(("sg00/x", b"", typeflag, link))), needle)


def test_member_caps() -> None:
    # A member whose header claims more bytes than the whole NEFF may hold.
    huge = tar_header("sg00/def.json", 8 << 30) + b"{}".ljust(512, b"\0") + bytes(1024)
    expect_invalid(wrap(huge), "member 'sg00/def.json' is too large")
    truncated = tar_header("sg00/def.json", 100_000) + b"{}".ljust(512, b"\0") + bytes(1024)
    expect_invalid(wrap(truncated), "truncated")
    many = build_payload({f"sg00/c{i}.npy": b"" for i in range(20)})
    expect_invalid(wrap(many), "more than 10 tar members", max_members=10)
    expect_invalid(
        wrap(build_payload({"sg00/def.json": b"{}", "sg00/big.npy": bytes(3000)})), "too large", max_size=5000
    )


def test_tar_header_corruption() -> None:
    good = bytearray(raw_tar(("sg00/def.json", b"{}", b"0", "")))
    bad_sum = bytearray(good)
    bad_sum[0] ^= 1
    expect_invalid(wrap(bytes(bad_sum)), "bad header checksum at byte 0")
    expect_invalid(wrap(bytes(good.replace(b"ustar\0", b"nope!\0"))), "no ustar header")

    def with_size(field: bytes) -> bytes:
        block = bytearray(good[:512])
        block[124:136] = field
        block[148:156] = b" " * 8
        block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
        return bytes(block) + bytes(good[512:])

    expect_invalid(wrap(with_size(b"\x80" + bytes(10) + b"\x02")), "base-256")
    expect_invalid(wrap(with_size(b"00000000009\0")), "is not an octal number")


def test_pax_and_gnu_extensions_rejected_fast() -> None:
    # CPython < 3.11.10 parses pax records in quadratic time (CVE-2024-6232); we never hand them to tarfile.
    body = b"1" * 1_000_000
    for typeflag in (b"x", b"g", b"L", b"K"):
        data = raw_tar(("pax", body, typeflag, ""), ("sg00/def.json", b"{}", b"0", ""))
        expect_invalid(wrap(data), "pax/GNU extended header")
    long_name = io.BytesIO()
    with tarfile.open(fileobj=long_name, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("sg00/" + "x" * 200 + ".npy"), io.BytesIO(b""))
    expect_invalid(wrap(long_name.getvalue()), "pax/GNU extended header (type 'x')")


def test_member_name_not_utf8() -> None:
    data = bytearray(raw_tar(("sg00/def.json", b"{}", b"0", "")))
    data[5] = 0xFF
    data[148:156] = b" " * 8
    data[148:156] = f"{sum(data[:512]):06o}".encode() + b"\0 "
    expect_invalid(wrap(bytes(data)), "member name that is not UTF-8")


def test_duplicate_member() -> None:
    data = raw_tar(("sg00/def.json", b"{}", b"0", ""), ("sg00/def.json", b"{}", b"0", ""))
    expect_invalid(wrap(data), "duplicate member 'sg00/def.json'")


def test_unexpected_members() -> None:
    doc = json.dumps(def_doc()).encode()
    expect_invalid(wrap(build_payload({"sg00/def.json": doc, "README": b"hi"})), "unexpected member 'README'")
    expect_invalid(wrap(build_payload({"sg00/def.json": doc, "sg00/extra.npy": b""})), "unexpected member")
    expect_invalid(wrap(build_payload({"sg00/def.json": doc, "sg02/def.json": doc})), "without gaps")
    expect_invalid(wrap(build_payload({"sg01/def.json": doc})), "without gaps")
    expect_invalid(wrap(build_payload({"sg00/other.json": doc})), "no sg00/def.json")


def test_subgraphs_must_agree_on_io() -> None:
    other = GraphBuilder()
    other.output("output0", other.op("relu", [other.input("a_input", "float16", (4, 4))]))
    payload = build_payload(
        {
            "sg00/def.json": json.dumps(def_doc()).encode(),
            "sg01/def.json": json.dumps(def_doc(other)).encode(),
        }
    )
    expect_invalid(wrap(payload, num_tpb=2), "sg01 declares different inputs/outputs than sg00")


# ------------------------------------------------------------------------------------------------ malformed: def.json


def test_bad_json() -> None:
    expect_invalid(neff_with_def(None, raw=b"{not json"), "sg00/def.json is not valid JSON")
    expect_invalid(neff_with_def(None, raw=b"\xff\xfe"), "not valid UTF-8")
    expect_invalid(neff_with_def(None, raw=b"[" * 100_000), "not valid JSON")
    expect_invalid(neff_with_def(None, raw=b'{"a": 1, "a": 2}'), "duplicate key 'a'")
    expect_invalid(neff_with_def(None, raw=b'{"a": NaN}'), "non-standard JSON constant NaN")
    expect_invalid(neff_with_def(None, raw=b"[]"), "must be a JSON object")
    inf = json.dumps(def_doc()).replace('"attrs": {}', '"attrs": {"x": 1e999}').encode()
    expect_invalid(neff_with_def(None, raw=inf), "attrs is not a finite number")


Mutator = Callable[[dict[str, Any]], Any]


def _set(path: list[Any], value: Any) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (_set(["schema"], "other/1"), "schema is 'other/1'"),
        (_delete(["nodes"]), "sg00/def.json is missing nodes"),
        (_set(["extra"], 1), "unknown key(s) 'extra'"),
        (_set(["var"], {}), "var and nodes must be JSON arrays"),
        (_set(["var", 0, "type"], "tmp-buf"), "has type 'tmp-buf'"),
        (_set(["var", 0, "dtype"], "float64"), "unknown dtype 'float64'"),
        (_set(["var", 0, "dtype"], ["float16"]), "unknown dtype"),
        (_set(["var", 0, "shape"], [4, 4]), "has size 24 but shape [4, 4] of float16 is 32 bytes"),
        (_set(["var", 0, "shape"], [4, -3]), "shape dimension is -3"),
        (_set(["var", 0, "shape"], [4, 3.0]), "must be an integer"),
        (_set(["var", 0, "shape"], [True, 3]), "must be an integer"),
        (_set(["var", 0, "shape"], [1] * 17), "rank 17"),
        (_set(["var", 0, "shape"], [2**32, 2**32]), "shape dimension is 4294967296, expected 0 to 4294967295"),
        (_set(["var", 0, "shape"], [2**31] * 3), "too large"),
        (_set(["var", 0, "size"], 25), "has size 25"),
        (_set(["var", 0, "name"], ""), "name must be a non-empty string"),
        (_set(["var", 0, "name"], "a\nb"), "control characters"),
        (_set(["var", 0, "name"], "é" * 200), "longer than 255 UTF-8 bytes"),
        (_set(["var", 0, "offset"], 0), "unknown key(s) 'offset'"),
        (_set(["var", 1, "name"], "a_input"), "var 'a_input' is declared twice"),
        (_set(["var", 2, "type"], "virtual"), "missing offset"),
        (lambda d: d["var"].pop(2), "no output var"),
        (lambda d: d["var"].append(dict(d["var"][2], name="o2")), "output var 'o2' is not produced"),
        (_set(["nodes", 0, "executor"], "GPU"), "executor is 'GPU'"),
        (_set(["nodes", 0, "inputs"], ["nope"]), "reads unknown var 'nope'"),
        (_set(["nodes", 0, "inputs"], "a_input"), "inputs must be a JSON array"),
        (_set(["nodes", 0, "outputs"], []), "has no outputs"),
        (_set(["nodes", 0, "outputs"], ["output0", "output0"]), "lists an output twice"),
        (_set(["nodes", 0, "outputs"], ["a_input"]), "writes var 'a_input' of type input"),
        (_set(["nodes", 0, "outputs"], ["ghost"]), "writes unknown var 'ghost'"),
        (_set(["nodes", 0, "attrs"], []), "attrs must be a JSON object"),
        (_set(["nodes", 0, "attrs"], {"x": [[[[[[[[[1]]]]]]]]]}), "nests deeper than 8"),
        (_set(["nodes", 0, "op"], 7), "op must be a non-empty string"),
        (_delete(["nodes", 0, "name"]), "node[0] is missing name"),
        (_set(["nodes", 0, "bogus"], 1), "unknown key(s) 'bogus'"),
        (lambda d: d["nodes"].append(dict(d["nodes"][0])), "node 'add_0' is declared twice"),
        (lambda d: d["nodes"].append(dict(d["nodes"][0], name="n2")), "which another node already produces"),
        (lambda d: d["nodes"].insert(0, dict(d["nodes"][0], name="n0", inputs=["output0"], outputs=["output0"])),
         "reads var 'output0' before any node produces it"),
    ],
)  # fmt: skip
def test_schema_violations(mutate: Mutator, needle: str) -> None:
    doc = copy.deepcopy(def_doc())
    mutate(doc)
    expect_invalid(neff_with_def(doc), needle)


# ------------------------------------------------------------------------------------------------ malformed: constants


def const_neff(array_bytes: bytes | None, var: dict[str, Any] | None = None) -> bytes:
    g = GraphBuilder()
    w = g.constant("w", np.zeros((2, 2), np.float32))
    g.output("out", g.op("relu", [w]))
    doc = g.definition()
    if var:
        doc["var"][0].update(var)
    members = {"sg00/def.json": json.dumps(doc).encode()}
    if array_bytes is not None:
        members["sg00/" + doc["var"][0]["file"]] = array_bytes
    return wrap(build_payload(members))


def test_constant_files() -> None:
    parse_neff(const_neff(npy_bytes(np.ones((2, 2), np.float32))))
    expect_invalid(const_neff(None), "refers to missing file 'sg00/constants/0000_w.npy'")
    expect_invalid(
        const_neff(npy_bytes(np.ones((2, 3), np.float32))), "has shape [2, 3], the var says [2, 2]"
    )
    expect_invalid(
        const_neff(npy_bytes(np.ones((2, 2), np.float16))), "has dtype <f2, expected <f4 for float32"
    )
    expect_invalid(const_neff(npy_bytes(np.ones((2, 2), ">f4"))), "has dtype >f4")
    obj = npy_bytes(np.array([[1, None], [2, 3]], dtype=object), allow_pickle=True)
    expect_invalid(const_neff(obj), "object dtype")
    expect_invalid(const_neff(b"garbage"), "not a valid .npy file")
    expect_invalid(
        const_neff(npy_bytes(np.ones((2, 2), np.float32))[:-4]), "holds 12 data bytes, expected 16"
    )
    expect_invalid(const_neff(npy_bytes(np.ones((2, 2), np.float32)) + b"x"), "holds 17 data bytes")
    zipped = io.BytesIO()
    np.savez(zipped, w=np.ones((2, 2), np.float32))
    expect_invalid(const_neff(zipped.getvalue()), "not a valid .npy file")
    big_header = npy_bytes(np.ones((2, 2), np.float32)).replace(b"(2, 2)", b"(99999999999, 99999999999)")
    expect_invalid(const_neff(big_header), "the var says [2, 2]")
    escaped = npy_bytes(np.ones((2, 2), np.float32)).replace(b"'<f4'", b"'\\h4'")
    expect_invalid(const_neff(escaped), "header has characters outside a Python dict literal")
    expect_invalid(
        const_neff(npy_bytes(np.ones((2, 2), np.float32)).replace(b"(2, 2)", b"[2, 2]")), "not a valid .npy"
    )
    fortran = np.asfortranarray(np.arange(4, dtype=np.float32).reshape(2, 2))
    loaded = parse_neff(const_neff(npy_bytes(fortran))).subgraphs[0].constants["w"]
    assert loaded.flags.c_contiguous and loaded.tolist() == [[0, 1], [2, 3]]
    v2 = io.BytesIO()
    np.lib.format.write_array(v2, np.ones((2, 2), np.float32), version=(2, 0))
    parse_neff(const_neff(v2.getvalue()))
    v3 = bytearray(v2.getvalue())
    v3[6] = 3
    expect_invalid(const_neff(bytes(v3)), ".npy format version 3.0, expected 1.0 or 2.0")
    expect_invalid(const_neff(b"", {"file": "../w.npy"}), "path traversal")
    expect_invalid(const_neff(b"", {"file": "w.txt"}), "must be a relative .npy path")


def test_shared_constant_file_rejected() -> None:
    g = GraphBuilder()
    w1 = g.constant("w1", np.zeros(2, np.float32))
    w2 = g.constant("w2", np.zeros(2, np.float32))
    g.output("out", g.op("add", [w1, w2]))
    doc = g.definition()
    doc["var"][1]["file"] = doc["var"][0]["file"]
    expect_invalid(neff_with_def(doc), "is used by two vars")


# ------------------------------------------------------------------------------------------------ inspect

GOLDEN_NODES = """\
NEFF Nodes:
    NODE       Executor     Name    Variable    Size    Type    Format    Shape    DataType    TimeSeries
       1    Neuron Core     sg00
                                           x      24      IN        NC    [2 3]     float32
                                          lo      16     OUT        NC    [2 2]     float32    false
                                          hi      16     OUT        NC    [2 2]     float32    false
       2            CPU    add_3
                                     mul_1:0      24      IN              [2 3]     float32
                                    cast_2:0      24      IN              [2 3]     float32
                                     add_3:0      24     OUT              [2 3]     float32
"""

GOLDEN_HEADER = """\
NEFF Header:
      Package Version:               3
      Header Size:                   1024      (bytes)
      Data Size:                     {size:<10}(bytes)
      Major Version:                 2
      Minor Version:                 0
      Build Version:                 nrt_lab-0.1.0
      Number of Neuron cores:        1
      Requested Neuron cores:        1
      Logical NeuronCore size:       1
      Subgraphs:                     sg00
      Hash:                          {hash}
      UUID:                          0123456789abcdef0123456789abcdef
      Network Name:                  consts
      Enabled Features:              N/A
"""


def test_inspect_listing_golden() -> None:
    model = parse_neff(const_graph().build(uuid=UUID))
    assert format_neff_nodes(model) == GOLDEN_NODES
    assert describe_neff(model) == GOLDEN_HEADER.format(size=model.header.data_size, hash=model.hash)


def test_inspect_listing_lnc2() -> None:
    model = parse_neff(add_graph().build(lnc=2, subgraphs=2, requested_cores=2))
    lines = format_neff_nodes(model).splitlines()
    assert lines[2].split() == ["1", "Neuron", "Core", "sg00"]
    assert lines[6].split() == ["1", "Neuron", "Core", "sg01"]
    assert lines[9].split() == ["output0", "24", "OUT", "NC", "[4", "3]", "float16", "false"]
