"""Pure renderers of ``neuron-ls`` output (docs/behaviour.md §7): the tables, the ``-t`` topology and the ``-j`` JSON.

No file system, no processes: callers pass the instance, its id and the live owner records.

Layout sources (public, as close as they allow):

* aws-neuron-sdk ``tools/neuron-sys-tools/neuron-ls.rst`` (trn2n.48xlarge examples of the current tool):
  header lines ``instance-type:``/``instance-id:``/``logical-neuroncore-config:``; the default columns
  NEURON DEVICE, NEURON CORES, NEURON CORE IDS, NEURON MEMORY, CONNECTED DEVICES, PCI BDF (full, ``0000:cc:00.0``),
  CPU AFFINITY, NUMA NODE; ``--wide``/``--show-all-procs`` columns NEURON DEVICE, NEURON CORES, NEURON MEMORY,
  CONNECTED DEVICES, PCI BDF (short, ``cc:00.0``), PID, COMMAND, RUNTIME VERSION with COMMAND cut to 80/40
  characters ending in ``...``; the ``--topology`` table and 4×4 drawing with its ``Legend:``; the ``-j`` keys.
  Headers are split over two lines and centred (odd space on the right), cells left-aligned, ``+---+`` borders.
* Older revisions of the same page (inf1.6xlarge): idle devices show ``NA`` in PID/COMMAND/RUNTIME VERSION;
  a device used by several processes gets one row per process, and then every device group is closed by a
  border line (without multi-process devices the rows run on, as in the trn2 ``--wide`` example); the open
  chain drawing ``[ 0 ]◄––►[ 1 ]◄––►[ 2 ]◄––►[ 3 ]`` after a blank line.
* Real outputs of current neuron-ls pasted publicly (a trn2.48xlarge environment report with ``-j``; a
  trn1.2xlarge blog post): in the default view, processes add PID right after PCI BDF and COMMAND, RUNTIME
  VERSION after NUMA NODE; COMMAND is dropped when no listed process has a command; RUNTIME VERSION shows
  three components (``2.34.10`` for libnrt 2.34.10.0); ``-j`` is a list indented by 4 with ``numa_node`` a string
  and ``memory_size`` in bytes. That report also puts ``instance_type``/``instance_id`` first in each object:
  pass ``instance_id=`` to :func:`render_json` to get them (docs/behaviour.md §7's key list is the default).
* ``-j`` consumers: Ray's ``python/ray/_private/accelerators/neuron.py`` sums ``nc_count`` over the list.

Inferred (no public sample): the ring drawing (one row with wrap-around arrows, as in the torus rows), the
single-device drawing, ``connected_to: []`` for single-device instances, and owners with no cores (e.g. a
``neuron-monitor`` that merely opened the devices) being listed on every device.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from nrt_lab.hardware import DeviceSpec, InstanceSpec, classify
from nrt_lab.tools._cli import printable

if TYPE_CHECKING:
    from nrt_lab.cluster.views import ClusterSnapshot

__all__ = [
    "OwnerRecord",
    "COMMAND_WIDTH",
    "COMMAND_WIDTH_WIDE",
    "format_memory",
    "format_core_ids",
    "format_runtime_version",
    "truncate_command",
    "processes_on_device",
    "render_table",
    "render_topology",
    "render_json",
    "render_cluster",
    "render_cluster_json",
    "RAY_WIDTH",
]

COMMAND_WIDTH = 40
COMMAND_WIDTH_WIDE = 80
_LNC_FAMILIES = ("trn2", "trn2u")

_LEFT = "\u25c4"  # ◄
_RIGHT = "\u25ba"  # ►
_DASH = "\u2013"  # – (en dash)
_VBAR = "\u2502"  # │
_DOWN = "\u25bc"  # ▼
_UP = "\u25b2"  # ▲
_LINK = f"{_LEFT}{_DASH}{_DASH}{_RIGHT}"  # ◄––►
_WRAP_IN = f"*{_DASH}{_DASH}{_RIGHT}"  # *––►
_WRAP_OUT = f"{_LEFT}{_DASH}{_DASH}*"  # ◄––*

class OwnerRecord(Protocol):
    """What a listed process must offer (``nrt_lab.monitor.OwnerRecord`` does): the renderers need no more."""

    @property
    def pid(self) -> int:
        """Process id."""

    @property
    def command(self) -> str:
        """Command line (raw: the renderers escape control characters)."""

    @property
    def runtime_version(self) -> str:
        """libnrt version, ``NA`` for a process that only opened the devices."""

    @property
    def cores(self) -> tuple[int, ...]:
        """NeuronCores owned, in the machine's logical ids."""


# Column headers, already split over the two header lines neuron-ls uses.
_H_DEVICE = ("NEURON", "DEVICE")
_H_CORES = ("NEURON", "CORES")
_H_CORE_IDS = ("NEURON", "CORE IDS")
_H_MEMORY = ("NEURON", "MEMORY")
_H_CONNECTED = ("CONNECTED", "DEVICES")
_H_BDF = ("PCI", "BDF")
_H_PID = ("PID", "")
_H_CPU = ("CPU", "AFFINITY")
_H_NUMA = ("NUMA", "NODE")
_H_COMMAND = ("COMMAND", "")
_H_RUNTIME = ("RUNTIME", "VERSION")


# --------------------------------------------------------------------------------------------------
# cell formatting
# --------------------------------------------------------------------------------------------------


def format_memory(memory_bytes: int) -> str:
    """Device memory as neuron-ls prints it: whole GiB labelled ``GB`` (``96 GB``)."""
    return f"{memory_bytes // (1 << 30)} GB"


def format_core_ids(device: DeviceSpec) -> str:
    """NEURON CORE IDS cell: ``0-3`` (a single id for a one-core device)."""
    first, last = device.first_core, device.first_core + device.core_count - 1
    return str(first) if first == last else f"{first}-{last}"


def format_runtime_version(version: str) -> str:
    """RUNTIME VERSION cell: the first three numeric components (``2.34.10.0`` → ``2.34.10``); ``NA`` kept."""
    parts = version.split(".")
    if len(parts) > 3 and all(p.isdigit() for p in parts[:3]):
        return ".".join(parts[:3])
    return version


def truncate_command(command: str, width: int = COMMAND_WIDTH) -> str:
    """COMMAND cell: ``command`` cut to ``width`` characters, the last three being ``...`` when cut."""
    if len(command) <= width:
        return command
    return command[: max(width - 3, 0)] + "..."


def _is_runtime(owner: OwnerRecord) -> bool:
    return owner.runtime_version != "NA"


def processes_on_device(
    device: DeviceSpec, owners: Sequence[OwnerRecord], *, all_processes: bool = False
) -> list[OwnerRecord]:
    """Owners shown on ``device``, by pid: those whose cores intersect it (coreless owners: every device).

    Without ``all_processes`` only Neuron runtime processes (``runtime_version != "NA"``) are kept.
    """
    cores = set(device.cores)
    shown: dict[int, OwnerRecord] = {}
    for owner in owners:
        if not all_processes and not _is_runtime(owner):
            continue
        if owner.cores and cores.isdisjoint(owner.cores):
            continue
        shown.setdefault(owner.pid, owner)
    return [shown[pid] for pid in sorted(shown)]


# --------------------------------------------------------------------------------------------------
# table drawing
# --------------------------------------------------------------------------------------------------


def _center(text: str, width: int) -> str:
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - len(text) - left)


def _draw_table(
    headers: Sequence[tuple[str, str]], groups: Sequence[Sequence[Sequence[str]]], *, separate_groups: bool
) -> list[str]:
    """Lines of a neuron-ls table; ``groups`` holds one list of rows per device."""
    widths = [max(len(h[0]), len(h[1])) for h in headers]
    for rows in groups:
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str], centre: bool) -> str:
        parts = (_center(c, w) if centre else c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return "| " + " | ".join(parts) + " |"

    out = [border, line([h[0] for h in headers], True), line([h[1] for h in headers], True), border]
    for g, rows in enumerate(groups):
        out.extend(line(row, False) for row in rows)
        if separate_groups and g != len(groups) - 1:
            out.append(border)
    out.append(border)
    return out


def _header_lines(instance: InstanceSpec, instance_id: str) -> list[str]:
    lines = [f"instance-type: {instance.name}", f"instance-id: {printable(instance_id)}"]
    if instance.family in _LNC_FAMILIES:
        lines.append(f"logical-neuroncore-config: {instance.lnc}")
    return lines


def _connected(device: DeviceSpec) -> str:
    return ", ".join(str(n) for n in device.connected_to)


def _default_table(instance: InstanceSpec, owners: Sequence[OwnerRecord]) -> list[str]:
    multi = len(instance.devices) > 1
    per_device = [processes_on_device(d, owners) for d in instance.devices]
    listed = [p for procs in per_device for p in procs]
    with_procs = bool(listed)
    with_command = any(p.command for p in listed)

    headers: list[tuple[str, str]] = [_H_DEVICE, _H_CORES, _H_CORE_IDS, _H_MEMORY]
    if multi:
        headers.append(_H_CONNECTED)
    headers.append(_H_BDF)
    if with_procs:
        headers.append(_H_PID)
    headers += [_H_CPU, _H_NUMA]
    if with_procs:
        if with_command:
            headers.append(_H_COMMAND)
        headers.append(_H_RUNTIME)

    def row(device: DeviceSpec | None, proc: OwnerRecord | None) -> list[str]:
        cells = []
        if device is not None:
            cells += [str(device.index), str(device.core_count), format_core_ids(device)]
            cells.append(format_memory(device.memory_bytes))
            cells += [_connected(device)] if multi else []
            cells.append(device.bdf)
        else:
            cells += [""] * (6 if multi else 5)
        if with_procs:
            cells.append(str(proc.pid) if proc else "NA")
        if device is not None:
            cells += [device.cpu_affinity, str(device.numa_node)]
        else:
            cells += ["", ""]
        if with_procs:
            if with_command:
                cells.append(truncate_command(printable(proc.command)) if proc else "NA")
            cells.append(printable(format_runtime_version(proc.runtime_version)) if proc else "NA")
        return cells

    groups: list[list[list[str]]] = []
    for device, procs in zip(instance.devices, per_device, strict=True):
        if not procs:
            groups.append([row(device, None)])
        else:
            groups.append([row(device if i == 0 else None, p) for i, p in enumerate(procs)])
    return _draw_table(headers, groups, separate_groups=any(len(g) > 1 for g in groups))


def _compact_table(
    instance: InstanceSpec, owners: Sequence[OwnerRecord], *, command_width: int | None, all_processes: bool
) -> list[str]:
    """The -w / -a / -t layout; ``command_width=None`` leaves out the process columns (``-t``)."""
    multi = len(instance.devices) > 1
    headers: list[tuple[str, str]] = [_H_DEVICE, _H_CORES, _H_MEMORY]
    if multi:
        headers.append(_H_CONNECTED)
    headers.append(_H_BDF)
    if command_width is not None:
        headers += [_H_PID, _H_COMMAND, _H_RUNTIME]

    groups: list[list[list[str]]] = []
    for device in instance.devices:
        lead = [str(device.index), str(device.core_count), format_memory(device.memory_bytes)]
        lead += [_connected(device)] if multi else []
        lead.append(device.short_bdf)
        if command_width is None:
            groups.append([lead])
            continue
        procs = processes_on_device(device, owners, all_processes=all_processes)
        if not procs:
            groups.append([lead + ["NA", "NA", "NA"]])
            continue
        rows = []
        for i, p in enumerate(procs):
            cells = lead if i == 0 else [""] * len(lead)
            proc_cells = [str(p.pid), truncate_command(printable(p.command), command_width)]
            rows.append(cells + proc_cells + [printable(format_runtime_version(p.runtime_version))])
        groups.append(rows)
    return _draw_table(headers, groups, separate_groups=any(len(g) > 1 for g in groups))


def render_table(
    instance: InstanceSpec,
    instance_id: str,
    owners: Sequence[OwnerRecord],
    *,
    wide: bool = False,
    all_processes: bool = False,
) -> str:
    """``neuron-ls`` (default), ``-w`` and/or ``-a`` output, newline-terminated."""
    lines = _header_lines(instance, instance_id)
    if wide or all_processes:
        width = COMMAND_WIDTH_WIDE if wide else COMMAND_WIDTH
        lines += _compact_table(instance, owners, command_width=width, all_processes=all_processes)
    else:
        lines += _default_table(instance, owners)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# topology
# --------------------------------------------------------------------------------------------------


def _box(index: int) -> str:
    return f"[{_center(str(index), 3)}]"


def _torus_drawing(count: int, cols: int) -> list[str]:
    rows = count // cols
    width = len(_WRAP_IN) + cols * 5 + (cols - 1) * len(_LINK) + len(_WRAP_OUT)
    centres = [len(_WRAP_IN) + 2 + c * (5 + len(_LINK)) for c in range(cols)]

    def marks(ch: str) -> str:
        buf = [" "] * width
        for x in centres:
            buf[x] = ch
        return "".join(buf)

    out = [marks("*"), marks(_VBAR), marks(_DOWN)]
    for r in range(rows):
        boxes = [_box(i) for i in range(r * cols, (r + 1) * cols)]
        out.append(_WRAP_IN + _LINK.join(boxes) + _WRAP_OUT)
        out += [marks(_UP), marks(_VBAR)]
        out.append(marks(_DOWN) if r != rows - 1 else marks("*"))
    return out


def _legend() -> list[str]:
    return ["", "Legend:", "", f"        {_WRAP_IN} = Wrap-around link"]


def render_topology(instance: InstanceSpec, instance_id: str, owners: Sequence[OwnerRecord]) -> str:
    """``neuron-ls -t``: the short table, then the ``Neuron Device Topology`` drawing (newline-terminated).

    ``owners`` is accepted for symmetry with :func:`render_table`; the topology view lists no processes.
    """
    del owners
    lines = _header_lines(instance, instance_id)
    lines += _compact_table(instance, (), command_width=None, all_processes=False)
    lines += ["", "", "Neuron Device Topology"]
    kind = classify([d.connected_to for d in instance.devices])
    count = len(instance.devices)
    boxes = [_box(i) for i in range(count)]
    if kind == "torus":
        lines += _torus_drawing(count, 4)
        lines += _legend()
    elif kind == "ring":
        lines += ["", _WRAP_IN + _LINK.join(boxes) + _WRAP_OUT]
        lines += _legend()
    else:  # chain or single device
        lines += ["", "  " + _LINK.join(boxes)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------


def render_json(
    instance: InstanceSpec,
    owners: Sequence[OwnerRecord],
    *,
    all_processes: bool = False,
    instance_id: str | None = None,
) -> str:
    """``neuron-ls -j``/``--json-output``: a JSON list with one object per device (newline-terminated).

    Keys are docs/behaviour.md §7's; with ``instance_id`` each object also starts with ``instance_type`` and
    ``instance_id``, as a real 2026 trn2.48xlarge ``neuron-ls -j`` report shows.
    """
    devices: list[dict[str, object]] = []
    for device in instance.devices:
        obj: dict[str, object] = {}
        if instance_id is not None:
            obj["instance_type"] = instance.name
            obj["instance_id"] = instance_id
        obj.update(
            {
                "neuron_device": device.index,
                "bdf": device.bdf,
                "cpu_affinity": device.cpu_affinity,
                "numa_node": str(device.numa_node),
                "connected_to": list(device.connected_to),
                "nc_count": device.core_count,
                "logical_neuroncore_config": instance.lnc,
                "memory_size": device.memory_bytes,
                "neuroncore_ids": list(device.cores),
                "neuron_processes": [
                    {
                        "pid": p.pid,
                        "command": truncate_command(p.command),
                        "neuron_runtime_version": format_runtime_version(p.runtime_version),
                    }
                    for p in processes_on_device(device, owners, all_processes=all_processes)
                ],
            }
        )
        devices.append(obj)
    return json.dumps(devices, indent=4, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------------
# neuron-ls --cluster (docs/cluster-views.md): no real tool does this; the table follows neuron-ls's own layout
# --------------------------------------------------------------------------------------------------

_H_NODE = ("NODE", "")
_H_INSTANCE = ("INSTANCE", "TYPE")
_H_STATE = ("STATE", "")
_H_NODE_CORES = ("NEURON CORES", "USED/TOTAL")
_H_RAY = ("RAY", "JOB / ACTOR OR TASK")
_H_OWNER_CORES = ("CORES", "")
RAY_WIDTH = 48


def render_cluster(snapshot: ClusterSnapshot, *, wide: bool = False) -> str:
    """``neuron-ls --cluster``: one table, a row per node and per owner process on it, then every node that is
    not alive with why, then what Ray cannot place yet (pending tasks and actors with their demands)."""
    nodes = snapshot.nodes
    alive = sum(1 for n in nodes if n.alive)
    width = COMMAND_WIDTH_WIDE if wide else RAY_WIDTH
    lines = [
        f"cluster: {printable(snapshot.address) or 'connected'}",
        f"nodes: {len(nodes)} ({alive} alive)",
        f"neuron-cores: {snapshot.used_cores} used of {snapshot.total_cores}",
    ]
    groups: list[list[list[str]]] = []
    for node in nodes:
        used = str(node.used_cores) if node.alive else "-"
        first = [printable(node.name), printable(node.instance) + (f" (lnc{node.lnc})" if node.lnc != 1 else ""),
                 node.state, f"{used}/{node.total_cores}"]
        owners = sorted(node.owners, key=lambda o: (o.cores[:1] or (1 << 30,), o.pid))
        if not owners:
            groups.append([first + ["NA", "NA", "NA"]])
            continue
        rows = []
        for index, owner in enumerate(owners):
            ray = printable(owner.ray.text) if owner.ray is not None else "not a Ray process"
            cells = first if index == 0 else ["", "", "", ""]
            rows.append(cells + [str(owner.pid), truncate_command(ray, width), owner.core_ranges])
        groups.append(rows)
    headers = [_H_NODE, _H_INSTANCE, _H_STATE, _H_NODE_CORES, _H_PID, _H_RAY, _H_OWNER_CORES]
    lines += _draw_table(headers, groups, separate_groups=True) if groups else ["no node (is the cluster up?)"]
    troubled = [n for n in nodes if not n.alive or n.reason]
    if troubled:
        lines.append("")
        lines += [f"{printable(n.name)}: {n.state}: {printable(n.reason)}" for n in troubled]
    if snapshot.pending:
        lines.append("")
        lines.append(f"pending: {len(snapshot.pending)} waiting for a node")
        for p in snapshot.pending:
            job = f" (job {printable(p.job_id)})" if p.job_id else ""
            lines.append(f"  {p.kind} {printable(p.name)}{job} asks {p.demand_text}: {printable(p.reason)}")
    if snapshot.errors:
        lines.append("")
        lines += [f"error: {printable(e)}" for e in snapshot.errors]
    return "\n".join(lines) + "\n"


def render_cluster_json(snapshot: ClusterSnapshot) -> str:
    """``neuron-ls --cluster -j``: :meth:`ClusterSnapshot.to_dict` indented by 4, like ``-j``."""
    return json.dumps(snapshot.to_dict(), indent=4) + "\n"
