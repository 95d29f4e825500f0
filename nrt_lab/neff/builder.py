"""A small graph builder that writes nrt_lab NEFFs (the format of :mod:`nrt_lab.neff.reader`).

Usage::

    g = GraphBuilder(name="add")
    a = g.input("a_input", dtype="float16", shape=(4, 3))
    b = g.input("b_input", dtype="float16", shape=(4, 3))
    c = g.op("add", [a, b])
    g.output("output0", c)
    write_neff("add.neff", g.build(neff_version=(2, 0), lnc=1, requested_cores=1, subgraphs=1))

Every op output starts as a ``virtual`` var named ``<node>:<i>`` (node names are ``<op>_<n>``);
:meth:`GraphBuilder.output` turns one into an ``output`` var under the given name.

Output shape/dtype: for an op that is a kernel of :mod:`nrt_lab.kernels`, the kernel's own shape inference
(``Kernel.infer``, the rule the runtime checks at load too), so the inputs, dtypes and attrs are validated
here, at build time, exactly as the kernel will; an explicit ``shape=``/``dtype=`` must then agree with it.
Any other op name (which the runtime will refuse to run, but which tools may still inspect) needs ``shape=``;
its dtype defaults to the first input's.

``build(subgraphs=N)`` writes the same op graph into ``sg00`` … ``sg{N-1}`` (one per physical core of the
logical core: LNC=2 is sg00+sg01). Builds are deterministic: tar entries carry mtime 0 and owner 0, so only
the uuid (random unless given) differs between two builds of one graph.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import uuid as uuid_module
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.kernels import KernelError, TensorSpec, get_kernel
from nrt_lab.neff.header import (
    HEADER_SIZE,
    MAX_SUBGRAPHS,
    PKG_VERSION,
    SUPPORTED_NEFF_VERSION,
    NeffHeader,
    payload_digest,
)
from nrt_lab.neff.schema import DEF_SCHEMA_ID, DTYPES, EXECUTORS, parse_def, storage_dtype
from nrt_lab.neff.tar import build_payload

__all__ = ["DEFAULT_BUILD_VERSION", "GraphBuilder", "Var", "dtype_name", "write_neff"]

DEFAULT_BUILD_VERSION = "nrt_lab-0.1.0"
"""``neff_build_version`` written when the caller gives none."""

_VIRTUAL_ALIGN = 64


def _invalid(message: str) -> NrtError:
    return NrtError(NrtStatus.INVALID, message)


def dtype_name(dtype: Any) -> str:
    """Normalise a dtype (name, numpy type or dtype, ml_dtypes type) to a supported NEFF dtype name."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    try:
        name = str(np.dtype(dtype).name)
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise _invalid(f"unknown dtype {name!r} (supported: {', '.join(DTYPES)})")
    return name


def _shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise _invalid(f"{what}: shape {shape!r} must be a sequence of integers") from None
    if any(d < 0 for d in out):
        raise _invalid(f"{what}: shape {list(out)} has a negative dimension")
    return out


class _VarRec:
    """Mutable record behind a :class:`Var` (identity matters: nodes hold these, names resolve at build)."""

    __slots__ = ("name", "kind", "dtype", "shape", "array", "produced")

    def __init__(
        self,
        name: str,
        kind: str,
        dtype: str,
        shape: tuple[int, ...],
        array: np.ndarray[Any, Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.dtype = dtype
        self.shape = shape
        self.array = array
        self.produced = False


class Var:
    """A handle on a tensor of a :class:`GraphBuilder` (input, constant, state buffer or op result)."""

    __slots__ = ("_builder", "_rec")

    def __init__(self, builder: GraphBuilder, rec: _VarRec) -> None:
        self._builder = builder
        self._rec = rec

    @property
    def name(self) -> str:
        """Current var name (an op result is renamed by :meth:`GraphBuilder.output`)."""
        return self._rec.name

    @property
    def kind(self) -> str:
        """def.json var type: input, output, file, virtual or state-buffer."""
        return self._rec.kind

    @property
    def dtype(self) -> str:
        """NEFF dtype name."""
        return self._rec.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape."""
        return self._rec.shape

    @property
    def size(self) -> int:
        """Size in bytes."""
        return math.prod(self.shape) * int(DTYPES[self.dtype][0].itemsize)

    def __repr__(self) -> str:
        return f"Var({self.name!r}, {self.kind}, {self.dtype}, {list(self.shape)})"


def _infer(op: str, ins: Sequence[_VarRec], attrs: Mapping[str, Any], what: str) -> TensorSpec | None:
    """The output (shape, dtype) the kernel ``op`` declares for these inputs; None if ``op`` is not a kernel."""
    try:
        kernel = get_kernel(op)
    except KernelError:
        return None
    try:
        return kernel.infer([TensorSpec(v.shape, v.dtype) for v in ins], attrs)
    except KernelError as exc:
        raise _invalid(f"{what}: {exc}") from None


def _check_declared(
    what: str, inferred: TensorSpec, shape: tuple[int, ...] | None, dtype: str | None
) -> None:
    """An explicit shape=/dtype= for a kernel must agree with what the kernel produces."""
    if (shape is not None and shape != inferred.shape) or (dtype is not None and dtype != inferred.dtype):
        raise _invalid(
            f"{what}: the kernel produces {inferred.dtype} {list(inferred.shape)} but shape={shape} "
            f"dtype={dtype} was given; accepted: no shape=/dtype= or the inferred ones"
        )


class _Node:
    __slots__ = ("name", "op", "inputs", "outputs", "attrs", "executor")

    def __init__(
        self,
        name: str,
        op: str,
        inputs: list[_VarRec],
        outputs: list[_VarRec],
        attrs: dict[str, Any],
        executor: str,
    ) -> None:
        self.name = name
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
        self.attrs = attrs
        self.executor = executor


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64].strip(".") or "c"


class GraphBuilder:
    """Builds one op graph and serialises it as a NEFF (header + tar payload)."""

    def __init__(self, name: str = "model") -> None:
        """``name`` becomes the NEFF header's network name (at most 255 UTF-8 bytes)."""
        self.name = name
        self._vars: list[_VarRec] = []
        self._outputs: list[_VarRec] = []
        self._nodes: list[_Node] = []
        self._names: set[str] = set()
        self._node_names: set[str] = set()
        self._counter = 0

    # -- vars -----------------------------------------------------------------------------------------------

    def _new(self, rec: _VarRec) -> Var:
        if rec.name in self._names:
            raise _invalid(f"var name {rec.name!r} is already used in graph {self.name!r}")
        self._names.add(rec.name)
        self._vars.append(rec)
        return Var(self, rec)

    def _own(self, var: Var, what: str) -> _VarRec:
        if not isinstance(var, Var) or var._builder is not self:
            raise _invalid(f"{what}: {var!r} is not a Var of graph {self.name!r}")
        return var._rec

    def input(self, name: str, dtype: Any, shape: Sequence[int]) -> Var:
        """Declare a model input tensor (inputs keep declaration order)."""
        return self._new(_VarRec(name, "input", dtype_name(dtype), _shape(shape, name)))

    def constant(self, name: str, array: npt.ArrayLike) -> Var:
        """Declare a constant (a ``file`` var) stored as ``.npy`` in the payload; dtype is the array's."""
        arr = np.array(array, copy=True, order="C")
        dtype = dtype_name(arr.dtype)
        return self._new(_VarRec(name, "file", dtype, tuple(int(d) for d in arr.shape), array=arr))

    def state_buffer(self, name: str, dtype: Any, shape: Sequence[int]) -> Var:
        """Declare a state buffer: kept between executions, read by ops, written by one ``op(..., out=buf)``."""
        return self._new(_VarRec(name, "state-buffer", dtype_name(dtype), _shape(shape, name)))

    # -- ops ------------------------------------------------------------------------------------------------

    def _start_node(
        self, op: str, inputs: Sequence[Var], attrs: Mapping[str, Any] | None, executor: str, name: str | None
    ) -> tuple[str, list[_VarRec], dict[str, Any]]:
        node_name = name if name is not None else f"{op}_{self._counter}"
        self._counter += 1
        what = f"node {node_name!r}"
        if node_name in self._node_names:
            raise _invalid(f"{what}: node name already used")
        if not isinstance(op, str) or not op:
            raise _invalid(f"{what}: op must be a non-empty string")
        if executor not in EXECUTORS:
            raise _invalid(f"{what}: executor {executor!r} must be 'Neuron Core' or 'CPU'")
        recs = [self._own(v, what) for v in inputs]
        clean = dict(attrs or {})
        try:
            clean = json.loads(json.dumps(clean, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise _invalid(f"{what}: attrs must be JSON-serialisable with finite numbers: {exc}") from None
        return node_name, recs, clean

    def _append(self, node: _Node) -> None:
        self._node_names.add(node.name)
        self._nodes.append(node)

    def op(
        self,
        op: str,
        inputs: Sequence[Var],
        attrs: Mapping[str, Any] | None = None,
        *,
        shape: Sequence[int] | None = None,
        dtype: Any = None,
        executor: str = "Neuron Core",
        name: str | None = None,
        out: Var | None = None,
    ) -> Var:
        """Add an op with one output and return it; shape/dtype are inferred (module doc) unless given.

        ``out`` makes the op write an existing state buffer (its only writer) instead of a new var.
        """
        node_name, recs, clean = self._start_node(op, inputs, attrs, executor, name)
        what = f"node {node_name!r}"
        if out is not None:
            target = self._own(out, what)
            if target.kind != "state-buffer" or target.produced:
                raise _invalid(f"{what}: out= must be a state buffer that no other op writes")
            written = _infer(op, recs, clean, what)
            if written is not None:
                _check_declared(what, written, target.shape, target.dtype)
            target.produced = True
            self._append(_Node(node_name, op, recs, [target], clean, executor))
            return out
        given_shape = None if shape is None else _shape(shape, what)
        given_dtype = None if dtype is None else dtype_name(dtype)
        inferred = _infer(op, recs, clean, what)
        if inferred is not None:
            _check_declared(what, inferred, given_shape, given_dtype)
            out_shape, out_dtype = inferred
        else:
            if given_dtype is None and recs:
                given_dtype = recs[0].dtype
            if given_shape is None or given_dtype is None:
                raise _invalid(
                    f"{what}: cannot infer the output shape/dtype of op {op!r}, which is not a kernel of "
                    "nrt_lab.kernels; pass shape= and dtype="
                )
            out_shape, out_dtype = given_shape, given_dtype
        var = self._new(_VarRec(f"{node_name}:0", "virtual", out_dtype, out_shape))
        var._rec.produced = True
        self._append(_Node(node_name, op, recs, [var._rec], clean, executor))
        return var

    def multi_op(
        self,
        op: str,
        inputs: Sequence[Var],
        outputs: Sequence[tuple[Sequence[int], Any]],
        attrs: Mapping[str, Any] | None = None,
        *,
        executor: str = "Neuron Core",
        name: str | None = None,
    ) -> tuple[Var, ...]:
        """Add an op with several outputs, each given as (shape, dtype); returns them in order."""
        node_name, recs, clean = self._start_node(op, inputs, attrs, executor, name)
        if not outputs:
            raise _invalid(f"node {node_name!r}: an op needs at least one output")
        specs = [(dtype_name(out_dtype), _shape(out_shape, node_name)) for out_shape, out_dtype in outputs]
        outs = []
        for i, (out_dtype, out_shape) in enumerate(specs):
            var = self._new(_VarRec(f"{node_name}:{i}", "virtual", out_dtype, out_shape))
            var._rec.produced = True
            outs.append(var)
        self._append(_Node(node_name, op, recs, [v._rec for v in outs], clean, executor))
        return tuple(outs)

    def output(self, name: str, var: Var) -> Var:
        """Make the op result ``var`` a model output called ``name``; outputs keep the order of these calls."""
        rec = self._own(var, f"output {name!r}")
        if rec.kind != "virtual":
            raise _invalid(
                f"output {name!r}: {var!r} must be an op result (not an input, constant or output)"
            )
        if name != rec.name and name in self._names:
            raise _invalid(f"var name {name!r} is already used in graph {self.name!r}")
        self._names.discard(rec.name)
        self._names.add(name)
        rec.name, rec.kind = name, "output"
        self._outputs.append(rec)
        return var

    # -- serialisation --------------------------------------------------------------------------------------

    def _const_files(self) -> dict[int, str]:
        files: dict[int, str] = {}
        for i, rec in enumerate(v for v in self._vars if v.kind == "file"):
            files[id(rec)] = f"constants/{i:04d}_{_sanitize(rec.name)}.npy"
        return files

    def definition(self) -> dict[str, Any]:
        """The ``def.json`` document of this graph (what every ``sgNN/def.json`` holds), checked for validity."""
        files = self._const_files()
        ordered = [v for v in self._vars if v.kind != "output"] + self._outputs
        entries: list[dict[str, Any]] = []
        offset = 0
        for rec in ordered:
            size = math.prod(rec.shape) * int(DTYPES[rec.dtype][0].itemsize)
            entry: dict[str, Any] = {
                "name": rec.name, "type": rec.kind, "dtype": rec.dtype, "shape": list(rec.shape), "size": size,
            }  # fmt: skip
            if rec.kind == "file":
                entry["file"] = files[id(rec)]
            elif rec.kind == "virtual":
                entry["offset"] = offset
                offset += -(-size // _VIRTUAL_ALIGN) * _VIRTUAL_ALIGN
            entries.append(entry)
        nodes = [
            {
                "name": n.name,
                "op": n.op,
                "inputs": [r.name for r in n.inputs],
                "outputs": [r.name for r in n.outputs],
                "attrs": n.attrs,
                "executor": n.executor,
            }
            for n in self._nodes
        ]
        doc = {"schema": DEF_SCHEMA_ID, "var": entries, "nodes": nodes}
        parse_def(json.loads(json.dumps(doc)), f"graph {self.name!r}")
        return doc

    def payload(self, subgraphs: int = 1) -> bytes:
        """The uncompressed tar payload: ``sgNN/def.json`` and ``sgNN/constants/*.npy`` for each subgraph."""
        if not isinstance(subgraphs, int) or not 1 <= subgraphs <= MAX_SUBGRAPHS:
            raise _invalid(f"subgraphs is {subgraphs!r}, expected 1 to {MAX_SUBGRAPHS}")
        doc = self.definition()
        members: dict[str, bytes] = {
            "def.json": json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        }
        files = self._const_files()
        for rec in self._vars:
            if rec.kind == "file" and rec.array is not None:
                buf = io.BytesIO()
                stored = np.array(rec.array, order="C", copy=True).view(storage_dtype(rec.dtype))
                np.save(buf, stored, allow_pickle=False)
                members[files[id(rec)]] = buf.getvalue()
        return build_payload(
            {f"sg{i:02d}/{path}": data for i in range(subgraphs) for path, data in members.items()}
        )

    def build(
        self,
        neff_version: tuple[int, int] = SUPPORTED_NEFF_VERSION,
        lnc: int = 1,
        requested_cores: int = 1,
        subgraphs: int = 1,
        *,
        uuid: bytes | str | None = None,
        build_version: str = DEFAULT_BUILD_VERSION,
        pkg_version: int = PKG_VERSION,
        feature_bits: int = 0,
    ) -> bytes:
        """The whole NEFF (header + payload). Any version may be written, so tests can make NEFFs too new.

        ``uuid`` (16 bytes or 32 hex digits) makes the output reproducible; by default it is random.
        """
        if lnc not in (1, 2):
            raise _invalid(f"lnc is {lnc!r}, expected 1 or 2")
        if not isinstance(requested_cores, int) or requested_cores < 1:
            raise _invalid(f"requested_cores is {requested_cores!r}, at least 1 NeuronCore must be requested")
        payload = self.payload(subgraphs)
        if uuid is None:
            raw_uuid = uuid_module.uuid4().bytes
        elif isinstance(uuid, str):
            raw_uuid = uuid_module.UUID(hex=uuid).bytes
        else:
            raw_uuid = bytes(uuid)
        if len(raw_uuid) != 16:
            raise _invalid("uuid must be 16 bytes")
        major, minor = neff_version
        _, digest = payload_digest(pkg_version, payload)
        header = NeffHeader(
            pkg_version=pkg_version,
            header_size=HEADER_SIZE,
            data_size=len(payload),
            neff_version_major=major,
            neff_version_minor=minor,
            build_version=build_version,
            num_tpb=subgraphs,
            hash=digest.ljust(32, b"\x00"),
            uuid=raw_uuid,
            name=self.name,
            requested_tpb_count=requested_cores,
            tpb_per_node=bytes([subgraphs]).ljust(64, b"\x00"),
            feature_bits=feature_bits,
            lnc_size=lnc,
        )
        return header.pack() + payload


def write_neff(path: str | os.PathLike[str], neff: bytes) -> None:
    """Write NEFF bytes to ``path`` (through a temporary file and a rename, so readers never see half a file)."""
    target = os.fspath(path)
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(neff)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
