"""Reading a NEFF: one bounded file reader, then header + tar + schema checks into a :class:`NeffModel`.

File layout: ``[header: 1024 bytes][payload: data_size bytes]`` (:mod:`nrt_lab.neff.header`); the payload is an
uncompressed ustar (:mod:`nrt_lab.neff.tar`) holding, per subgraph ``sg00``, ``sg01``, … (contiguous, at most
:data:`~nrt_lab.neff.header.MAX_SUBGRAPHS`):

* ``sgNN/def.json``: the subgraph definition (:mod:`nrt_lab.neff.schema`);
* the constants of its ``file`` vars as ``.npy`` files (format 1.0/2.0, plain little-endian dtype) at
  ``sgNN/<var.file>``. ``bfloat16`` and ``float8_*`` constants are stored as their raw bits (``uint16`` /
  ``uint8``) because ``.npy`` has no such types, and viewed back on load.

Nothing else may be in the tar (directory entries aside). Every subgraph must declare the same inputs and
outputs (name, dtype, shape): with LNC=2, sg00 and sg01 are the two physical cores of one logical core.

:func:`read_neff_bytes` is the one way a NEFF is read from a path (``Model.load``, nrtpy, ``nrt-lab neff
inspect``): it follows symbolic links (users point at models through them) but reads only a regular file,
opened non-blocking so a FIFO never hangs, with its size checked against a bound before anything is read.
:func:`parse_neff` never touches the filesystem, never unpickles (``allow_pickle=False``), bounds every size and
count, and reports anything malformed as ``NrtError(NrtStatus.INVALID, ...)`` naming the problem; a NEFF newer
than :data:`~nrt_lab.neff.header.SUPPORTED_NEFF_VERSION` is ``NrtError(NrtStatus.UNSUPPORTED_NEFF_VERSION,
"NEFF version mismatch supported: 2.0 received: X.Y")`` (docs/behaviour.md §8, docs/behaviour.md).
"""

from __future__ import annotations

import ast
import io
import os
import re
import stat
import struct
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.neff._common import invalid
from nrt_lab.neff.header import HEADER_SIZE, parse_neff_header, payload_digest
from nrt_lab.neff.schema import DTYPES, NeffModel, NeffSubgraph, NeffVar, load_json, parse_def
from nrt_lab.neff.tar import DEFAULT_MAX_MEMBERS, read_members

__all__ = ["DEFAULT_MAX_NEFF_BYTES", "parse_neff", "read_neff", "read_neff_bytes"]

DEFAULT_MAX_NEFF_BYTES = 1 << 30
"""Default cap on a whole NEFF (header + payload), hence on every member and on all members together: 1 GiB."""

_MAX_NPY_HEADER = 10000
_SUBGRAPH_RE = re.compile(r"sg(\d\d)")
_READ_CHUNK = 1 << 24
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)

# Tokens of an .npy header dict, one way only to match each character (linear, no backtracking blow-up);
# no backslashes or keywords, so ast.literal_eval never warns about escapes or "1if"-style literals.
_NPY_HEADER_RE = re.compile(r"""(?:[ \t\n{}(),:]|'[^'\\\n]*'|"[^"\\\n]*"|[0-9]|True|False)*""")


def _npy_header(raw: memoryview, what: str) -> tuple[str, bool, tuple[int, ...], int]:
    """(descr, fortran_order, shape, data offset) of a .npy 1.0/2.0 file, parsed here with strict checks."""
    if len(raw) < 10 or bytes(raw[:6]) != b"\x93NUMPY":
        raise invalid(f"{what} is not a valid .npy file: bad magic")
    version = (raw[6], raw[7])
    if version == (1, 0):
        (length,), start = struct.unpack_from("<H", raw, 8), 10
    elif version == (2, 0) and len(raw) >= 12:
        (length,), start = struct.unpack_from("<I", raw, 8), 12
    else:
        raise invalid(f"{what} has .npy format version {version[0]}.{version[1]}, expected 1.0 or 2.0")
    if length > _MAX_NPY_HEADER or start + length > len(raw):
        raise invalid(f"{what} is not a valid .npy file: header length {length} is out of range")
    text = bytes(raw[start : start + length]).decode("latin1")
    if not _NPY_HEADER_RE.fullmatch(text):
        raise invalid(
            f"{what} is not a valid .npy file: header has characters outside a Python dict literal"
        )
    try:
        header = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise invalid(f"{what} is not a valid .npy file: bad header: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise invalid(f"{what} is not a valid .npy file: header must have descr, fortran_order and shape")
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(fortran, bool) or not isinstance(shape, tuple):
        raise invalid(f"{what} is not a valid .npy file: bad fortran_order or shape")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise invalid(f"{what} is not a valid .npy file: shape {shape!r} is not a tuple of sizes")
    if not isinstance(descr, str):
        raise invalid(f"{what} has a structured dtype, expected a plain numeric dtype")
    return descr, fortran, shape, start + length


def _load_constant(raw: memoryview, var: NeffVar, where: str) -> np.ndarray[Any, Any]:
    """Decode one .npy member for ``var``: header checked here first, then ``np.load(allow_pickle=False)``."""
    what = f"{where}: constant {var.file!r} of var {var.name!r}"
    want = DTYPES[var.dtype][1]
    descr, _fortran, shape, data_start = _npy_header(raw, what)
    if descr.lstrip("<>|=").startswith("O"):
        raise invalid(f"{what} has an object dtype, which is never loaded (no pickles)")
    if descr != want.str:
        raise invalid(f"{what} has dtype {descr}, expected {want.str} for {var.dtype}")
    if shape != var.shape:
        raise invalid(f"{what} has shape {list(shape)}, the var says {list(var.shape)}")
    data_bytes = len(raw) - data_start
    if data_bytes != var.size:
        raise invalid(f"{what} holds {data_bytes} data bytes, expected {var.size}")
    try:
        loaded: Any = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # numpy's parser has an open set of errors; the header is checked
        raise invalid(f"{what} could not be loaded: {exc}") from None
    if not isinstance(loaded, np.ndarray) or loaded.dtype != want or loaded.shape != var.shape:
        raise invalid(f"{what} did not load as a {var.dtype} array of shape {list(var.shape)}")
    array: np.ndarray[Any, Any] = loaded
    if not array.flags.c_contiguous:
        array = np.array(array, order="C")
    array = array.view(DTYPES[var.dtype][0])
    array.flags.writeable = False
    return array


def _build_subgraph(name: str, files: Mapping[str, memoryview]) -> tuple[NeffSubgraph, set[str]]:
    where = f"{name}/def.json"
    if where not in files:
        raise invalid(f"NEFF payload has no {where}")
    variables, nodes = parse_def(load_json(files[where], where), where)
    used = {where}
    constants: dict[str, np.ndarray[Any, Any]] = {}
    for var in variables:
        if var.file is None:
            continue
        path = f"{name}/{var.file}"
        if path not in files:
            raise invalid(f"{where}: var {var.name!r} refers to missing file {path!r}")
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
        raise invalid(f"NEFF is too large: {len(data)} bytes, limit {max_size} bytes")
    header = parse_neff_header(data)
    actual = len(data) - HEADER_SIZE
    if header.data_size != actual:
        raise invalid(f"NEFF data_size is {header.data_size} but {actual} bytes follow the header")
    if actual == 0:
        raise invalid("NEFF payload is empty")
    payload = memoryview(data)[HEADER_SIZE:]
    if validate_hash:
        algo, digest = payload_digest(header.pkg_version, payload)
        stored = header.hash[: len(digest)]
        if stored != digest:
            raise invalid(f"NEFF hash mismatch: header {algo} {stored.hex()} payload {algo} {digest.hex()}")
    files, dirs = read_members(payload, max_size, max_members)
    names: set[str] = set()
    for path in files:
        top = path.split("/", 1)[0]
        if not _SUBGRAPH_RE.fullmatch(top) or "/" not in path:
            raise invalid(f"NEFF payload has unexpected member {path!r} (expected sgNN/...)")
        names.add(top)
    count = len(names)
    expected_names = {f"sg{i:02d}" for i in range(count)}
    if names != expected_names:
        raise invalid(f"NEFF subgraphs must be sg00..sg{count - 1:02d} without gaps, found {sorted(names)}")
    for path in sorted(dirs):
        if path.split("/", 1)[0] not in names:
            raise invalid(f"NEFF payload has unexpected directory {path!r} (expected sgNN/...)")
    if count != header.num_tpb:
        raise invalid(f"NEFF header num_tpb is {header.num_tpb} but the payload holds {count} subgraph(s)")
    subgraphs: list[NeffSubgraph] = []
    used: set[str] = set()
    for i in range(count):
        sg, sg_used = _build_subgraph(f"sg{i:02d}", files)
        subgraphs.append(sg)
        used |= sg_used
    for path in sorted(files):
        if path not in used:
            raise invalid(
                f"NEFF payload has unexpected member {path!r} (not def.json or a referenced constant)"
            )
    first = subgraphs[0]
    sig_in = [(v.name, v.dtype, v.shape) for v in first.inputs]
    sig_out = [(v.name, v.dtype, v.shape) for v in first.outputs]
    for sg in subgraphs[1:]:
        if [(v.name, v.dtype, v.shape) for v in sg.inputs] != sig_in or [
            (v.name, v.dtype, v.shape) for v in sg.outputs
        ] != sig_out:
            raise invalid(f"NEFF subgraph {sg.name} declares different inputs/outputs than sg00")
    return NeffModel(header=header, subgraphs=tuple(subgraphs))


def read_neff_bytes(path: str | os.PathLike[str], *, max_size: int = DEFAULT_MAX_NEFF_BYTES) -> bytes:
    """The bytes of the NEFF file at ``path``: a regular file (links followed) of at most ``max_size`` bytes.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a FIFO, a device such as
    ``/dev/zero`` or a directory is refused (NRT_INVALID naming the path) without blocking or reading, and a
    file swapped after a caller's own checks is judged by what was really opened. Exactly ``st_size`` bytes
    are read. A file that cannot be opened is NRT_FAILURE "Failed to load model", as nrtpy documents.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise invalid(f"NEFF path {path!r} is a {type(path).__name__}; accepted: a path (str or os.PathLike)")
    shown = os.fspath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (ValueError, TypeError) as exc:  # a NUL byte in the path, a PathLike returning bytes
        raise invalid(f"NEFF path {shown!r} is invalid: {exc}; accepted: a path without NUL bytes") from None
    except OSError as exc:
        raise NrtError(
            NrtStatus.FAILURE, f"Failed to load model: cannot read NEFF {shown}: {exc.strerror or exc}"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            raise invalid(f"NEFF {shown} is {kind}; accepted: a regular NEFF file")
        size = info.st_size
        if size > max_size:
            raise invalid(f"NEFF {shown} is too large: {size} bytes, limit {max_size} bytes")
        chunks: list[bytes] = []
        remaining = size
        while remaining > 0:
            chunk = os.read(fd, min(remaining, _READ_CHUNK))
            if not chunk:  # the file shrank while we read: parse what there is, the header check will say so
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise NrtError(
            NrtStatus.FAILURE, f"Failed to load model: cannot read NEFF {shown}: {exc.strerror or exc}"
        ) from None
    finally:
        os.close(fd)


def read_neff(
    path: str | os.PathLike[str],
    *,
    validate_hash: bool = False,
    max_size: int = DEFAULT_MAX_NEFF_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> NeffModel:
    """:func:`read_neff_bytes` then :func:`parse_neff`: a parsed NEFF from a path, every error an NrtError."""
    data = read_neff_bytes(path, max_size=max_size)
    return parse_neff(data, validate_hash=validate_hash, max_size=max_size, max_members=max_members)
