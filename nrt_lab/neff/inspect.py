"""Human-readable views of a parsed NEFF: the ``NEFF Nodes:`` listing and a ``NEFF Header:`` summary.

The layout follows ``neuron-packager info`` as shown in the public Neuron docs (runtime developer guide and
neuron-packager page): every column is right-aligned to the widest of its header and cells, columns are
separated by four spaces, the last column (TimeSeries) is left as is, and trailing blanks are stripped.
One ``Neuron Core`` node (NODE 1) spans all subgraphs, one row ``sgNN`` each followed by its input (IN) and
output (OUT, TimeSeries ``false``) vars; every ``CPU``-executor op then gets its own node (2, 3, … in
subgraph and graph order) named after the op node, followed by the vars it reads (IN) and writes (OUT).
Shapes print as ``[1 3 552 984]``; Format is derived from the rank (1 N, 2 NC, 3 NWC, 4 NHWC, 5 NDHWC,
otherwise blank) and is blank for CPU nodes, as in the docs.
"""

from __future__ import annotations

from collections.abc import Sequence

from nrt_lab.neff.schema import NeffModel, NeffVar

__all__ = ["describe_neff", "format_neff_nodes"]

_COLUMNS = (
    "NODE",
    "Executor",
    "Name",
    "Variable",
    "Size",
    "Type",
    "Format",
    "Shape",
    "DataType",
    "TimeSeries",
)
_FORMATS = {1: "N", 2: "NC", 3: "NWC", 4: "NHWC", 5: "NDHWC"}


def _shape(shape: Sequence[int]) -> str:
    return "[" + " ".join(str(d) for d in shape) + "]"


def _var_row(var: NeffVar, usage: str, fmt: bool) -> list[str]:
    layout = _FORMATS.get(len(var.shape), "") if fmt else ""
    series = "false" if usage == "OUT" and fmt else ""
    return ["", "", "", var.name, str(var.size), usage, layout, _shape(var.shape), var.dtype, series]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = []
    for row in rows:
        cells = [cell.rjust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append(("    " + "    ".join(cells)).rstrip())
    return lines


def format_neff_nodes(model: NeffModel) -> str:
    """The ``NEFF Nodes:`` listing of docs/behaviour.md §8 (neuron-packager info layout), ending with a newline."""
    rows: list[list[str]] = [list(_COLUMNS)]
    for sg in model.subgraphs:
        rows.append(["1", "Neuron Core", sg.name, "", "", "", "", "", "", ""])
        rows.extend(_var_row(v, "IN", True) for v in sg.inputs)
        rows.extend(_var_row(v, "OUT", True) for v in sg.outputs)
    node_id = 1
    for sg in model.subgraphs:
        for node in sg.nodes:
            if node.executor != "CPU":
                continue
            node_id += 1
            rows.append([str(node_id), "CPU", node.name, "", "", "", "", "", "", ""])
            rows.extend(_var_row(sg.var(n), "IN", False) for n in node.inputs)
            rows.extend(_var_row(sg.var(n), "OUT", False) for n in node.outputs)
    return "NEFF Nodes:\n" + "\n".join(_table(rows)) + "\n"


def describe_neff(model: NeffModel) -> str:
    """A ``NEFF Header:`` summary (neuron-packager info style): name, uuid, versions, cores, lnc, hash, subgraphs."""
    h = model.header
    fields = [
        ("Package Version:", str(h.pkg_version)),
        ("Header Size:", f"{h.header_size:<10}(bytes)"),
        ("Data Size:", f"{h.data_size:<10}(bytes)"),
        ("Major Version:", str(h.neff_version_major)),
        ("Minor Version:", str(h.neff_version_minor)),
        ("Build Version:", h.build_version),
        ("Number of Neuron cores:", str(h.num_tpb)),
        ("Requested Neuron cores:", str(h.requested_tpb_count)),
        ("Logical NeuronCore size:", str(h.lnc_size)),
        ("Subgraphs:", " ".join(sg.name for sg in model.subgraphs)),
        ("Hash:", h.hash_hex),
        ("UUID:", h.uuid_hex),
        ("Network Name:", h.name),
        ("Enabled Features:", f"0x{h.feature_bits:x}" if h.feature_bits else "N/A"),
    ]
    lines = ["NEFF Header:"] + [f"      {label:<31}{value}".rstrip() for label, value in fields]
    return "\n".join(lines) + "\n"
