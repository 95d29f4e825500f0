"""NEFF files of nrt_lab: the SPEC §8 header, a tar payload of JSON op graphs and ``.npy`` constants.

* :mod:`nrt_lab.neff.format`: layout, data model and the strict reader :func:`parse_neff`;
* :mod:`nrt_lab.neff.builder`: :class:`GraphBuilder` and :func:`write_neff` to make NEFFs;
* :mod:`nrt_lab.neff.inspect`: the ``NEFF Nodes:`` listing and a header summary.
"""

from __future__ import annotations

from nrt_lab.neff.builder import (
    DEFAULT_BUILD_VERSION,
    GraphBuilder,
    Var,
    build_payload,
    dtype_name,
    write_neff,
)
from nrt_lab.neff.format import (
    DEF_JSON_SCHEMA,
    DEF_SCHEMA_ID,
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_NEFF_BYTES,
    DTYPES,
    EXECUTORS,
    HEADER_FORMAT,
    HEADER_SIZE,
    MAX_SUBGRAPHS,
    PKG_VERSION,
    SUPPORTED_NEFF_VERSION,
    VAR_TYPES,
    NeffHeader,
    NeffModel,
    NeffNode,
    NeffSubgraph,
    NeffVar,
    TensorInfo,
    check_neff_version,
    dtype_itemsize,
    numpy_dtype,
    parse_neff,
    parse_neff_header,
    read_neff,
    storage_dtype,
)
from nrt_lab.neff.inspect import describe_neff, format_neff_nodes

__all__ = [
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
    "PKG_VERSION",
    "SUPPORTED_NEFF_VERSION",
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
    "storage_dtype",
    "write_neff",
]
