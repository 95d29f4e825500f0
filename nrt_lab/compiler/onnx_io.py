"""Reading ONNX models safely: regular files only, size bounds, external data kept beside the model.

An ONNX file is untrusted input (docs/architecture.md): it is read from a regular file whose size is checked
first, parsed by the ``onnx`` package, checked with ``onnx.checker``, and its external tensor data is read only
from regular files in the model's own directory (no absolute paths, no ``..``, no links out), each bounded by
the size the tensor declares. Every failure is one :class:`~nrt_lab.errors.NrtError` (NRT_INVALID) naming the
file or tensor and what is accepted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from nrt_lab.errors import NrtError, NrtStatus

__all__ = ["DEFAULT_MAX_ONNX_BYTES", "SUPPORTED_OPSET", "KNOWN_DOMAINS", "load_onnx", "read_bounded"]

DEFAULT_MAX_ONNX_BYTES = 2 << 30
"""Largest ONNX file (and each external data file) read: protobuf's own 2 GiB limit."""

SUPPORTED_OPSET = (13, 28)
"""Opset versions of the default ONNX domain the compiler accepts (inclusive)."""

KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")


def _invalid(message: str) -> NrtError:
    return NrtError(NrtStatus.INVALID, message)


def read_bounded(path: str | os.PathLike[str], what: str, max_size: int, *, offset: int = 0,
                 length: int | None = None) -> bytes:
    """Read a regular file (no symlink at the last component) of at most ``max_size`` bytes; NrtError otherwise."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _invalid(f"{what} {name!r} does not exist") from None
    except OSError as exc:
        raise _invalid(f"{what} {name!r} cannot be opened ({exc.strerror or exc}); accepted: a readable regular "
                       "file (not a symbolic link)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _invalid(f"{what} {name!r} is not a regular file; accepted: a regular file")
        size = info.st_size
        end = size if length is None else offset + length
        if offset < 0 or end > size:
            raise _invalid(f"{what} {name!r} holds {size} bytes but bytes {offset}..{end} are needed")
        if end - offset > max_size:
            raise _invalid(f"{what} {name!r} is {end - offset} bytes, more than the limit of {max_size} bytes")
        chunks = []
        os.lseek(fd, offset, os.SEEK_SET)
        remaining = end - offset
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 16 << 20))
            if not chunk:
                raise _invalid(f"{what} {name!r} ended early (truncated while reading)")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load_external(model: Any, base: Path | None, max_size: int) -> None:
    """Fill every initializer stored as external data from files beside the model (bounded, no escapes)."""
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    for tensor in _get_all_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if base is None:
            raise _invalid(f"tensor {tensor.name!r} keeps its data in external file {location!r}; compile the model "
                           "from its file path (not bytes or a ModelProto) so the data file can be found beside it")
        rel = Path(location)
        if not location or rel.is_absolute() or ".." in rel.parts:
            raise _invalid(f"tensor {tensor.name!r}: external data location {location!r} is not accepted; "
                           "accepted: a relative path inside the model's directory")
        try:
            offset = int(info.get("offset", "0"))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise _invalid(f"tensor {tensor.name!r}: external data offset/length are not integers") from None
        target = base / rel
        try:
            inside = target.resolve().is_relative_to(base.resolve())
        except OSError:
            inside = False
        if not inside:
            raise _invalid(f"tensor {tensor.name!r}: external data location {location!r} leads outside the model's "
                           "directory (through a link); accepted: a file inside the model's directory")
        if not target.exists():
            raise _invalid(f"tensor {tensor.name!r}: its external data file {location!r} is missing (looked in "
                           f"{str(base)!r}); copy it beside the model")
        data = read_bounded(target, f"external data of tensor {tensor.name!r}", max_size, offset=offset,
                            length=length)
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT
        tensor.raw_data = data


def load_onnx(source: Any, *, max_size: int = DEFAULT_MAX_ONNX_BYTES) -> Any:
    """An ``onnx.ModelProto`` from a path, bytes or a ModelProto, checked, local functions inlined; NrtError if bad."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:  # pragma: no cover - onnx is a dependency of the compiler
        raise NrtError(NrtStatus.FAILURE, f"compiling ONNX needs the 'onnx' package ({exc}); pip install onnx") \
            from None
    base: Path | None = None
    what = "ONNX model"
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if len(data) > max_size:
                raise _invalid(f"ONNX model bytes are {len(data)} long, more than the limit of {max_size}")
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            what = f"ONNX model {str(path)!r}"
            data = read_bounded(path, "ONNX model", max_size)
            base = path.resolve().parent
        else:
            raise _invalid(f"cannot compile a {type(source).__name__}; accepted: a path to an .onnx file, its bytes "
                           "or an onnx.ModelProto")
        if not data:
            raise _invalid(f"{what} is empty; accepted: a serialized ONNX ModelProto")
        try:
            model = onnx.load_model_from_string(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise _invalid(f"{what} is not a valid ONNX file (truncated or not ONNX): {exc}") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise _invalid(f"{what} has no graph (truncated or not an ONNX model)")
    _load_external(model, base, max_size)
    for opset in model.opset_import:
        if opset.domain not in KNOWN_DOMAINS:
            raise _invalid(f"{what} imports unknown opset domain {opset.domain!r} (version {opset.version}); "
                           f"accepted domains: {', '.join(repr(d) for d in KNOWN_DOMAINS)}")
        if opset.domain in ("", "ai.onnx") and opset.version > SUPPORTED_OPSET[1]:
            raise _invalid(f"{what} uses opset {opset.version} of the default ONNX domain; accepted: "
                           f"{SUPPORTED_OPSET[0]} to {SUPPORTED_OPSET[1]} (older opsets are converted to "
                           f"{SUPPORTED_OPSET[0]})")
    old = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx") and o.version < SUPPORTED_OPSET[0]]
    if old:
        try:
            from onnx import version_converter

            model = version_converter.convert_version(model, SUPPORTED_OPSET[0])
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise _invalid(f"{what} uses opset {old[0]} of the default ONNX domain and could not be converted to "
                           f"opset {SUPPORTED_OPSET[0]} (accepted: {SUPPORTED_OPSET[0]} to {SUPPORTED_OPSET[1]}, "
                           f"older ones when onnx.version_converter can convert them): {first}") from None
    if model.functions:
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as exc:
            raise _invalid(f"{what}: its local functions cannot be inlined: {exc}") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _invalid(f"{what} is not a valid ONNX model: {first}") from None
    return model
