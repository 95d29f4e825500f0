"""The NEFF subgraph schema (``sgNN/def.json``), the NEFF dtypes and the parsed-NEFF data model.

A ``def.json`` is ``{"schema": DEF_SCHEMA_ID, "var": [...], "nodes": [...]}``: a ``var`` list (inputs, outputs,
``file`` constants, ``virtual`` intermediates at an offset of the scratchpad, state buffers) and op ``nodes``
in execution order. :data:`DEF_JSON_SCHEMA` documents it for external tools; :func:`parse_def` checks the same
rules by hand plus the data flow, and reports anything malformed as NRT_INVALID naming the problem. Op names
are not checked here (the runtime checks them against its kernel registry).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.neff._common import MAX_NAME_BYTES, MAX_PATH_DEPTH, check_member_path, invalid
from nrt_lab.neff.header import NeffHeader

__all__ = [
    "thaw",
    "DEF_JSON_SCHEMA",
    "DEF_SCHEMA_ID",
    "DTYPES",
    "EXECUTORS",
    "MAX_TENSOR_BYTES",
    "VAR_TYPES",
    "NeffModel",
    "NeffNode",
    "NeffSubgraph",
    "NeffVar",
    "TensorInfo",
    "dtype_itemsize",
    "load_json",
    "numpy_dtype",
    "parse_def",
    "storage_dtype",
]

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
MAX_TENSOR_BYTES = 1 << 48
"""Largest tensor a var may declare (bytes); the runtime then checks sizes against HBM and host memory."""
_MAX_ATTR_DEPTH = 8


_PLAIN_DTYPES = ("uint64", "int8", "uint8", "int16", "uint16", "float16", "int32", "uint32", "float32", "int64")
_ML_DTYPES = ("bfloat16", "float8_e3m4", "float8_e4m3", "float8_e4m3fn", "float8_e5m2")


def _mk_dtypes() -> dict[str, tuple[np.dtype[Any], np.dtype[Any]]]:
    """name -> (logical numpy dtype, dtype stored in .npy)."""
    import ml_dtypes  # about half a second to import: only when a dtype is really looked up

    table: dict[str, tuple[np.dtype[Any], np.dtype[Any]]] = {}
    for name in _PLAIN_DTYPES:
        dt = np.dtype(name).newbyteorder("<")
        table[name] = (dt, dt)
    table["bfloat16"] = (np.dtype(ml_dtypes.bfloat16), np.dtype("<u2"))
    for name in _ML_DTYPES[1:]:
        table[name] = (np.dtype(getattr(ml_dtypes, name)), np.dtype("u1"))
    return table


class _DtypeTable(Mapping[str, tuple[np.dtype[Any], np.dtype[Any]]]):
    """A read-only table whose names are known at import and whose dtypes are built on first lookup."""

    def __init__(self) -> None:
        self._names = _PLAIN_DTYPES + _ML_DTYPES
        self._known = frozenset(self._names)
        self._table: dict[str, tuple[np.dtype[Any], np.dtype[Any]]] | None = None

    def __getitem__(self, name: str) -> tuple[np.dtype[Any], np.dtype[Any]]:
        table = self._table
        if table is None:
            table = self._table = _mk_dtypes()
        return table[name]

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


DTYPES: Mapping[str, tuple[np.dtype[Any], np.dtype[Any]]] = _DtypeTable()
"""Supported dtype names (the ``nrt_dtype_t`` types of docs/behaviour.md §3) -> (numpy dtype, ``.npy`` storage dtype)."""


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


# --------------------------------------------------------------------------------------------- JSON schema

_NAME_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES}
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


class TensorInfo(NamedTuple):
    """An input or output tensor as ``nrt_get_model_tensor_info`` reports it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int



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
        """max(offset + size) over the ``virtual`` vars (docs/behaviour.md §8), 0 without any."""
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


# --------------------------------------------------------------------------------------------- parsing


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def load_json(raw: memoryview, where: str) -> Any:
    """Decode ``def.json`` strictly (UTF-8, no duplicate keys, no NaN/Infinity, bounded size and depth)."""
    if len(raw) > _MAX_DEF_JSON_BYTES:
        raise invalid(f"{where} is too large: {len(raw)} bytes, limit {_MAX_DEF_JSON_BYTES}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"{where} is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise invalid(f"{where} is not valid JSON: nested too deep") from None
    except ValueError as exc:
        raise invalid(f"{where} is not valid JSON: {exc}") from None


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"{what} must be a non-empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise invalid(f"{what} {value!r} contains control characters")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{what} {value!r} is not valid UTF-8") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise invalid(f"{what} is longer than {MAX_NAME_BYTES} UTF-8 bytes")
    return value


def _check_int(value: Any, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"{what} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise invalid(f"{what} is {value}, expected {lo} to {hi}")
    return value


def _check_keys(obj: Any, required: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise invalid(f"{what} must be a JSON object")
    missing = required - obj.keys()
    if missing:
        raise invalid(f"{what} is missing {', '.join(sorted(missing))}")
    extra = obj.keys() - required
    if extra:
        raise invalid(f"{what} has unknown key(s) {', '.join(sorted(map(repr, extra)))}")
    return obj


def _check_attr_value(value: Any, what: str, depth: int) -> None:
    if depth > _MAX_ATTR_DEPTH:
        raise invalid(f"{what} nests deeper than {_MAX_ATTR_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise invalid(f"{what} is not a finite number")
        return
    if isinstance(value, list):
        for item in value:
            _check_attr_value(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not key:
                raise invalid(f"{what} has an empty key")
            _check_attr_value(item, what, depth + 1)
        return
    raise invalid(f"{what} has an unsupported value of type {type(value).__name__}")


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A node's frozen attributes (read-only mappings, tuples) as plain dicts and lists, as kernels take them."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


_VAR_KEYS = {"name", "type", "dtype", "shape", "size"}
_VAR_EXTRA = {"input": set(), "output": set(), "state-buffer": set(), "file": {"file"}, "virtual": {"offset"}}
_NODE_KEYS = {"name", "op", "inputs", "outputs", "attrs", "executor"}


def _parse_var(entry: Any, where: str, index: int) -> NeffVar:
    what = f"{where}: var[{index}]"
    if not isinstance(entry, dict):
        raise invalid(f"{what} must be a JSON object")
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in VAR_TYPES:
        raise invalid(f"{what} has type {kind!r}, expected one of {', '.join(VAR_TYPES)}")
    _check_keys(entry, _VAR_KEYS | _VAR_EXTRA[kind], what)
    name = _check_name(entry["name"], f"{what} name")
    what = f"{where}: var {name!r}"
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise invalid(f"{what} has unknown dtype {dtype!r} (supported: {', '.join(DTYPES)})")
    raw_shape = entry["shape"]
    if not isinstance(raw_shape, list):
        raise invalid(f"{what} shape must be a JSON array")
    if len(raw_shape) > _MAX_RANK:
        raise invalid(f"{what} has rank {len(raw_shape)}, at most {_MAX_RANK} is supported")
    shape = tuple(_check_int(d, f"{what} shape dimension", 0, _MAX_DIM) for d in raw_shape)
    size = _check_int(entry["size"], f"{what} size", 0, 2**64 - 1)
    expected = math.prod(shape) * DTYPES[dtype][0].itemsize
    if expected > MAX_TENSOR_BYTES:
        raise invalid(f"{what} is too large: {expected} bytes, limit {MAX_TENSOR_BYTES}")
    if size != expected:
        raise invalid(f"{what} has size {size} but shape {list(shape)} of {dtype} is {expected} bytes")
    file: str | None = None
    offset: int | None = None
    if kind == "file":
        raw_file = entry["file"]
        if not isinstance(raw_file, str):
            raise invalid(f"{what} file must be a string")
        check_member_path(raw_file)
        if len(raw_file.split("/")) > MAX_PATH_DEPTH or not raw_file.endswith(".npy"):
            raise invalid(
                f"{what} file {raw_file!r} must be a relative .npy path at most {MAX_PATH_DEPTH} deep"
            )
        file = raw_file
    if kind == "virtual":
        offset = _check_int(entry["offset"], f"{what} offset", 0, MAX_TENSOR_BYTES)
    return NeffVar(name=name, kind=kind, dtype=dtype, shape=shape, size=size, file=file, offset=offset)


def _parse_node(entry: Any, where: str, index: int) -> NeffNode:
    what = f"{where}: node[{index}]"
    _check_keys(entry, _NODE_KEYS, what)
    name = _check_name(entry["name"], f"{what} name")
    what = f"{where}: node {name!r}"
    op = _check_name(entry["op"], f"{what} op")
    executor = entry["executor"]
    if not isinstance(executor, str) or executor not in EXECUTORS:
        raise invalid(f"{what} executor is {executor!r}, expected 'Neuron Core' or 'CPU'")
    lists: list[tuple[str, ...]] = []
    for key in ("inputs", "outputs"):
        raw = entry[key]
        if not isinstance(raw, list):
            raise invalid(f"{what} {key} must be a JSON array of var names")
        if len(raw) > _MAX_NODE_ARITY:
            raise invalid(f"{what} has more than {_MAX_NODE_ARITY} {key}")
        lists.append(tuple(_check_name(v, f"{what} {key} entry") for v in raw))
    inputs, outputs = lists
    if not outputs:
        raise invalid(f"{what} has no outputs")
    if len(set(outputs)) != len(outputs):
        raise invalid(f"{what} lists an output twice")
    attrs = entry["attrs"]
    if not isinstance(attrs, dict):
        raise invalid(f"{what} attrs must be a JSON object")
    _check_attr_value(attrs, f"{what} attrs", 1)
    return NeffNode(name=name, op=op, inputs=inputs, outputs=outputs, attrs=_freeze(attrs), executor=executor)


def parse_def(doc: Any, where: str) -> tuple[tuple[NeffVar, ...], tuple[NeffNode, ...]]:
    """Validate a decoded def.json (structure and data flow) and turn it into vars and nodes."""
    _check_keys(doc, {"schema", "var", "nodes"}, where)
    if doc["schema"] != DEF_SCHEMA_ID:
        raise invalid(f"{where}: schema is {doc['schema']!r}, expected {DEF_SCHEMA_ID!r}")
    raw_vars, raw_nodes = doc["var"], doc["nodes"]
    if not isinstance(raw_vars, list) or not isinstance(raw_nodes, list):
        raise invalid(f"{where}: var and nodes must be JSON arrays")
    if len(raw_vars) > _MAX_VARS or len(raw_nodes) > _MAX_NODES:
        raise invalid(f"{where}: more than {_MAX_VARS} vars or {_MAX_NODES} nodes")
    variables = tuple(_parse_var(e, where, i) for i, e in enumerate(raw_vars))
    nodes = tuple(_parse_node(e, where, i) for i, e in enumerate(raw_nodes))
    by_name: dict[str, NeffVar] = {}
    files: set[str] = set()
    for v in variables:
        if v.name in by_name:
            raise invalid(f"{where}: var {v.name!r} is declared twice")
        by_name[v.name] = v
        if v.file is not None:
            if v.file in files:
                raise invalid(f"{where}: file {v.file!r} is used by two vars")
            files.add(v.file)
    if not any(v.kind == "output" for v in variables):
        raise invalid(f"{where}: the subgraph has no output var")
    available = {v.name for v in variables if v.kind in ("input", "file", "state-buffer")}
    produced: set[str] = set()
    node_names: set[str] = set()
    for node in nodes:
        what = f"{where}: node {node.name!r}"
        if node.name in node_names:
            raise invalid(f"{what} is declared twice")
        node_names.add(node.name)
        for name in node.inputs:
            if name not in by_name:
                raise invalid(f"{what} reads unknown var {name!r}")
            if name not in available:
                raise invalid(f"{what} reads var {name!r} before any node produces it")
        for name in node.outputs:
            var = by_name.get(name)
            if var is None:
                raise invalid(f"{what} writes unknown var {name!r}")
            if var.kind not in ("output", "virtual", "state-buffer"):
                raise invalid(f"{what} writes var {name!r} of type {var.kind}, which is read-only")
            if name in produced:
                raise invalid(f"{what} writes var {name!r}, which another node already produces")
            produced.add(name)
        available.update(node.outputs)
    for v in variables:
        if v.kind == "output" and v.name not in produced:
            raise invalid(f"{where}: output var {v.name!r} is not produced by any node")
    return variables, nodes

