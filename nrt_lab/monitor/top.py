"""neuron-top's view model: the tabs, the NeuronCore cells, the memory totals and the Memory Usage Details
tree, computed from a :class:`~nrt_lab.monitor.MachineSnapshot` (no drawing: the terminal app and the
``--once`` text in ``nrt_lab.tools.neuron_top`` render these).

In the ``all`` tab a runtime running with another logical-core size (trn2 LNC mixes) is mapped onto the
machine's cores through its physical cores: utilization is averaged over the physical cores a machine core
holds, FLOPS are split evenly over a runtime core's physical cores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nrt_lab.driver import OwnerRecord, physical_cores_of
from nrt_lab.monitor.diagnose import Finding
from nrt_lab.monitor.snapshot import NA, MachineSnapshot, NotApplicable, RuntimeSnapshot, get_view

__all__ = [
    "DaemonRow",
    "daemon_labels",
    "daemon_rows",
    "findings_summary",
    "notable_findings",
    "ALL_TAB",
    "DEVICE_ROWS",
    "HOST_ROWS",
    "CoreCell",
    "MemoryNode",
    "Tab",
    "core_cells",
    "device_totals",
    "host_totals",
    "memory_nodes",
    "runtime_key",
    "selected_runtimes",
    "sum_or_na",
    "tabs_of",
]

ALL_TAB = "all"

# (display name, stats-page key) of the Memory Usage Summary rows, in neuron-top's order.
HOST_ROWS = (("Tensors", "tensors"), ("Constants", "constants"), ("DMA Buffers", "dma_buffers"),
             ("App. Memory", "application_memory"))
DEVICE_ROWS = (("Tensors", "tensors"), ("Constants", "constants"), ("Model Code", "model_code"),
               ("Runtime Memory", "runtime_memory"), ("Model Scratchpad", "model_shared_scratchpad"))


@dataclass(frozen=True)
class Tab:
    """One entry of the tab bar: ``all`` (``runtime`` None) or one runtime."""

    key: str
    label: str
    runtime: RuntimeSnapshot | None


@dataclass(frozen=True)
class CoreCell:
    """One NeuronCore of the selected tab: its id in the tab's view, utilization (percent) and FLOPS."""

    core: int
    utilization: float | NotApplicable
    flops_per_s: float | NotApplicable


@dataclass
class MemoryNode:
    """A row of the Memory Usage Details tree; ``None`` means the column does not apply to this row."""

    key: str
    label: str
    host: int | NotApplicable | None
    device: int | NotApplicable | None
    children: list[MemoryNode] = field(default_factory=list)


def runtime_key(runtime: RuntimeSnapshot) -> str:
    """A stable key of a runtime (pid and start time: a reused pid is another runtime)."""
    return f"{runtime.pid}@{runtime.start_time:.6f}"


def tabs_of(snapshot: MachineSnapshot | None, labels: Mapping[int, str] | None = None) -> list[Tab]:
    """``all`` then one tab per live runtime (oldest first), labelled with the runtime's process tag (or with
    ``labels[pid]``: neuron-top labels a Runtime 1.x daemon by its address)."""
    tabs = [Tab(ALL_TAB, ALL_TAB, None)]
    if snapshot is not None:
        for rt in sorted(snapshot.runtimes, key=lambda r: (r.start_time, r.pid)):
            label = (labels or {}).get(rt.pid) or rt.tag or str(rt.pid)
            tabs.append(Tab(runtime_key(rt), label, rt))
    return tabs


@dataclass(frozen=True)
class DaemonRow:
    """A Runtime 1.x daemon neuron-top was asked to show: its address and, when one answers there, its owner
    record (pid, cores, command line) and runtime snapshot (models, utilization)."""

    address: str
    owner: OwnerRecord | None
    runtime: RuntimeSnapshot | None

    @property
    def answers(self) -> bool:
        """Whether a live daemon serves this address."""
        return self.owner is not None


def daemon_rows(owners: Iterable[OwnerRecord], snapshot: MachineSnapshot | None,
                addresses: Sequence[str]) -> list[DaemonRow]:
    """Each requested address (duplicates once) with the daemon serving it, found by its owner record; the daemons
    serving other addresses follow, so none is hidden."""
    daemons = [o for o in owners if o.is_daemon]
    wanted = list(dict.fromkeys(addresses))
    wanted += [a for a in (o.extra.get("address", "") for o in daemons) if a and a not in wanted]
    runtimes = {rt.pid: rt for rt in snapshot.runtimes} if snapshot is not None else {}
    rows = []
    for address in wanted:
        owner = next((o for o in daemons if o.extra.get("address") == address), None)
        rows.append(DaemonRow(address, owner, runtimes.get(owner.pid) if owner is not None else None))
    return rows


def daemon_labels(rows: Iterable[DaemonRow]) -> dict[int, str]:
    """Tab labels of the daemons: ``neuron-rtd <address>``."""
    return {row.owner.pid: f"neuron-rtd {row.address}" for row in rows if row.owner is not None}


def selected_runtimes(snapshot: MachineSnapshot, tab: Tab) -> tuple[RuntimeSnapshot, ...]:
    """The runtimes a tab shows: every runtime for ``all``, else the tab's own."""
    return snapshot.runtimes if tab.runtime is None else (tab.runtime,)


def core_cells(snapshot: MachineSnapshot, runtime: RuntimeSnapshot | None = None) -> tuple[str, list[CoreCell]]:
    """NeuronCore version and one cell per core: a runtime's own cores, or (``all``) every core of the machine.

    In ``all``, a runtime running with another logical-core size is mapped onto the machine's cores through
    their physical cores (utilization averaged, FLOPS summed); cores nobody owns are idle (0 %).
    """
    instance = snapshot.instance
    if runtime is not None:
        version = get_view(instance, runtime.lnc).neuroncore_version
        return version, [CoreCell(c.core, c.utilization, c.flops_per_s) for c in runtime.cores]
    lnc = instance.lnc
    busy = [0.0] * instance.total_cores
    flops = [0.0] * instance.total_cores
    for rt in snapshot.runtimes:
        view = get_view(instance, rt.lnc)
        for c in rt.cores:
            for physical in physical_cores_of(view, [c.core]):
                core = physical // lnc
                if 0 <= core < instance.total_cores:
                    busy[core] += c.utilization / lnc
                    flops[core] += c.flops_per_s / rt.lnc
    cells = [CoreCell(i, min(100.0, busy[i]), flops[i]) for i in range(instance.total_cores)]
    return instance.neuroncore_version, cells


def sum_or_na(values: Iterable[float | NotApplicable]) -> float | NotApplicable:
    """The sum of the measured values; N/A when none was measured."""
    numbers = [v for v in values if not isinstance(v, NotApplicable)]
    return sum(numbers) if numbers else NA


def host_totals(runtimes: Sequence[RuntimeSnapshot]) -> dict[str, int]:
    """Host memory by category over ``runtimes`` (bytes; every HOST_ROWS key present)."""
    totals = {key: 0 for _, key in HOST_ROWS}
    for rt in runtimes:
        for key, value in rt.host_memory.items():
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def device_totals(runtimes: Sequence[RuntimeSnapshot]) -> dict[str, int]:
    """Device memory by category over every core of ``runtimes`` (bytes; every DEVICE_ROWS key present)."""
    totals = {key: 0 for _, key in DEVICE_ROWS}
    for rt in runtimes:
        for core in rt.cores:
            for key, value in core.memory.items():
                totals[key] = totals.get(key, 0) + int(value)
    return totals


def _kinds(*memories: Mapping[str, int]) -> list[tuple[str, str]]:
    """(display name, key) of the device categories in ``memories``: documented order first, then unknown keys."""
    known = [(name, key) for name, key in DEVICE_ROWS if any(key in m for m in memories)]
    extra = sorted({k for m in memories for k in m} - {key for _, key in DEVICE_ROWS})
    return known + [(k, k) for k in extra]


def memory_nodes(snapshot: MachineSnapshot, runtime: RuntimeSnapshot | None = None) -> list[MemoryNode]:
    """The Memory Usage Details tree: runtime → NeuronCore → model → category, plus the runtime's ``Host``
    categories; each parent is the sum of its children (host memory is accounted per runtime, so cores and
    models have no host column)."""
    nodes: list[MemoryNode] = []
    runtimes = sorted(snapshot.runtimes, key=lambda r: (r.start_time, r.pid)) if runtime is None else [runtime]
    for rt in runtimes:
        key = runtime_key(rt)
        name = f"{rt.tag} (pid {rt.pid})" if rt.tag != str(rt.pid) else f"pid {rt.pid}"
        unreadable = bool(rt.error) and not rt.cores
        node = MemoryNode(key, f"Runtime {name}", NA if unreadable else rt.host_memory_total,
                          NA if unreadable else rt.device_memory_total)
        for core in rt.cores:
            core_key = f"{key}/nc{core.core}"
            core_node = MemoryNode(core_key, f"NeuronCore {core.core}", None, sum(core.memory.values()))
            attributed: dict[str, int] = {}
            for model in sorted((m for m in rt.models if m.core == core.core), key=lambda m: m.model_id):
                model_node = MemoryNode(f"{core_key}/m{model.model_id}", f"{model.model_id} {model.name}", None,
                                        sum(model.memory.values()))
                for label, kind in _kinds(model.memory):
                    value = int(model.memory[kind])
                    attributed[kind] = attributed.get(kind, 0) + value
                    if value:
                        model_node.children.append(MemoryNode(f"{model_node.key}/{kind}", label, None, value))
                core_node.children.append(model_node)
            for label, kind in _kinds(core.memory, core.memory_peak):
                # A category stays listed once it was used (peak), so that rows do not flicker as
                # execution tensors come and go.
                rest = int(core.memory.get(kind, 0)) - attributed.get(kind, 0)
                if rest > 0 or int(core.memory_peak.get(kind, 0)) > attributed.get(kind, 0):
                    core_node.children.append(MemoryNode(f"{core_key}/{kind}", label, None, max(0, rest)))
            node.children.append(core_node)
        if not unreadable:
            host = MemoryNode(f"{key}/host", "Host", rt.host_memory_total, None)
            for label, kind in HOST_ROWS:
                host.children.append(MemoryNode(f"{host.key}/{kind}", label, int(rt.host_memory.get(kind, 0)), None))
            node.children.append(host)
        nodes.append(node)
    return nodes


def notable_findings(findings: Sequence[Finding]) -> list[Finding]:
    """The findings neuron-top shows: errors, then warnings, in diagnose()'s order (info stays in the doctor)."""
    return [f for f in findings if f.severity == "error"] + [f for f in findings if f.severity == "warning"]


def findings_summary(findings: Sequence[Finding]) -> str:
    """One line for the title bar: ``1 error: <title> (nrt-lab doctor)``; "" when nothing is wrong."""
    notable = notable_findings(findings)
    if not notable:
        return ""
    errors = sum(f.severity == "error" for f in notable)
    warnings = len(notable) - errors
    counts = ", ".join(part for part in (
        f"{errors} error{'s' * (errors != 1)}" if errors else "",
        f"{warnings} warning{'s' * (warnings != 1)}" if warnings else "") if part)
    return f"{counts}: {notable[0].title} (nrt-lab doctor)"
