"""NEFF files of nrt_lab: the docs/behaviour.md §8 header, a tar payload of JSON op graphs and ``.npy`` constants.

* :mod:`nrt_lab.neff.header`: the 1024-byte header (pack, parse, versions, hash);
* :mod:`nrt_lab.neff.tar`: the bounded ustar reader of the payload and its deterministic writer;
* :mod:`nrt_lab.neff.schema`: ``def.json`` validation, NEFF dtypes and the parsed-NEFF data model;
* :mod:`nrt_lab.neff.reader`: the one bounded file reader and the strict parser :func:`parse_neff`;
* :mod:`nrt_lab.neff.builder`: :class:`GraphBuilder` and :func:`write_neff` to make NEFFs;
* :mod:`nrt_lab.neff.inspect`: the ``NEFF Nodes:`` listing and a header summary.
"""

from __future__ import annotations

from nrt_lab.neff.builder import DEFAULT_BUILD_VERSION, GraphBuilder, Var, dtype_name, write_neff
from nrt_lab.neff.header import (
    HEADER_FORMAT,
    HEADER_SIZE,
    MAX_SUBGRAPHS,
    PKG_VERSION,
    RUNTIME_1X_NEFF_VERSION,
    SUPPORTED_NEFF_VERSION,
    NeffHeader,
    check_neff_version,
    parse_neff_header,
)
from nrt_lab.neff.inspect import describe_neff, format_neff_nodes
from nrt_lab.neff.reader import DEFAULT_MAX_NEFF_BYTES, parse_neff, read_neff, read_neff_bytes
from nrt_lab.neff.schema import (
    DEF_JSON_SCHEMA,
    DEF_SCHEMA_ID,
    DTYPES,
    EXECUTORS,
    MAX_TENSOR_BYTES,
    VAR_TYPES,
    NeffModel,
    NeffNode,
    NeffSubgraph,
    NeffVar,
    TensorInfo,
    dtype_itemsize,
    numpy_dtype,
    storage_dtype,
    thaw,
)
from nrt_lab.neff.tar import DEFAULT_MAX_MEMBERS, build_payload

__all__ = [
    "thaw",
    "DEFAULT_BUILD_VERSION",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_NEFF_BYTES",
    "DEF_JSON_SCHEMA",
    "DEF_SCHEMA_ID",
    "DTYPES",
    "EXECUTORS",
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "MAX_SUBGRAPHS",
    "MAX_TENSOR_BYTES",
    "PKG_VERSION",
    "SUPPORTED_NEFF_VERSION",
    "RUNTIME_1X_NEFF_VERSION",
    "VAR_TYPES",
    "GraphBuilder",
    "NeffHeader",
    "NeffModel",
    "NeffNode",
    "NeffSubgraph",
    "NeffVar",
    "TensorInfo",
    "Var",
    "build_payload",
    "check_neff_version",
    "describe_neff",
    "dtype_itemsize",
    "dtype_name",
    "format_neff_nodes",
    "numpy_dtype",
    "parse_neff",
    "parse_neff_header",
    "read_neff",
    "read_neff_bytes",
    "storage_dtype",
    "write_neff",
]
