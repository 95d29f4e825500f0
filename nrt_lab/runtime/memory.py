"""Device memory accounting per HBM, and libnrt's OOM report (docs/behaviour.md §4 "OOM report").

Each logical NeuronCore draws on the HBM behind it (``InstanceSpec.hbm_of_core``); cores that share an HBM
(trn2 at LNC 1, inf2) share its limit, so one core's allocations can cause its neighbour's OOM, exactly the
failure libnrt explains with ``LNC size is 1. Neuron Cores using this HBM: NC 4 and NC 5``. Accounting covers
this process's cores (a core belongs to one process, and in practice so does its HBM).
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from nrt_lab.driver.state import append_state_text
from nrt_lab.driver.stats import DEVICE_MEMORY_KINDS, StatsPage
from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.hardware import InstanceSpec
from nrt_lab.runtime.logging import NrtLogger

__all__ = ["DeviceMemory", "format_size", "MICROCODE_BYTES_PER_PHYSICAL_NC", "MEMORY_KINDS"]

MICROCODE_BYTES_PER_PHYSICAL_NC = 96 * 2**20
MEMORY_KINDS = DEVICE_MEMORY_KINDS
_KIND_INDEX = {kind: index for index, kind in enumerate(DEVICE_MEMORY_KINDS)}
_TABLE_COLUMNS = ("TOTAL", "Model Code", "Model Constants", "Tensors", "Shared Scratchpad", "Scratchpad",
                  "Runtime", "DMA Rings IO", "DMA Rings Spill", "DMA Rings Collectives", "DMA Rings Runtime",
                  "Collectives", "XT CC", "Profiler Buffers")


def format_size(nbytes: int) -> str:
    """libnrt's size style: ``4.000GB``, ``12.500MB``, ``3.000KB`` or ``512B``."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3f}{unit}"
    return f"{nbytes}B"


class DeviceMemory:
    """Bytes in use per core and category; reservations beyond an HBM's size fail with NRT_RESOURCE."""

    def __init__(self, instance: InstanceSpec, cores: Sequence[int], stats: StatsPage | None, logger: NrtLogger,
                 syslog: Path | None) -> None:
        self.instance = instance
        self.cores = tuple(cores)
        self.stats = stats
        self.logger = logger
        self.syslog = syslog
        self.used: dict[int, dict[str, int]] = {core: dict.fromkeys(DEVICE_MEMORY_KINDS, 0) for core in cores}
        self.by_model: dict[int, dict[int, dict[str, int]]] = {core: {} for core in cores}
        self.model_names: dict[int, str] = {}
        self._lock = threading.Lock()

    def hbm_limit(self, core: int) -> int:
        """Bytes of the HBM behind ``core``."""
        device = self.instance.devices[self.instance.device_of_core(core)]
        return device.memory_bytes // self.instance.hbm_per_device

    def hbm_used(self, core: int) -> int:
        """Bytes in use on the HBM behind ``core`` by this process's cores that share it."""
        return sum(sum(self.used[c].values()) for c in self.instance.cores_sharing_hbm(core) if c in self.used)

    def core_total(self, core: int) -> int:
        """Bytes in use by ``core`` itself."""
        return sum(self.used[core].values())

    def reserve(self, core: int, nbytes: int, kind: str, model_id: int | None = None) -> None:
        """Account ``nbytes`` of ``kind`` on ``core``, or raise NRT_RESOURCE after logging the OOM report."""
        with self._lock:
            limit = self.hbm_limit(core)
            used = self.hbm_used(core)
            if used + nbytes > limit:
                self._report_oom(core, nbytes, kind, used, limit)
                raise NrtError(
                    NrtStatus.RESOURCE,
                    f"Failed to allocate {format_size(nbytes)} (usage: {kind}) on NeuronCore {core}: "
                    f"{format_size(limit - used)} of {format_size(limit)} free on its HBM",
                )
            self.used[core][kind] += nbytes
            if model_id is not None:
                per = self.by_model[core].setdefault(model_id, dict.fromkeys(DEVICE_MEMORY_KINDS, 0))
                per[kind] += nbytes
        if self.stats is not None:
            self.stats.add_device_memory(core, _KIND_INDEX[kind], nbytes)

    def reserve_each(self, cores: Sequence[int], nbytes: int, kind: str) -> None:
        """:meth:`reserve` ``nbytes`` of ``kind`` on every core of ``cores`` (all or none), checking each HBM once:
        init() reserves microcode on all its cores, up to 128, and must not cost 128 separate checks."""
        with self._lock:
            wanted: dict[tuple[int, int], list[int]] = {}
            for core in cores:
                wanted.setdefault(self.instance.hbm_of_core(core), []).append(core)
            for group in wanted.values():
                first = group[0]
                limit, used = self.hbm_limit(first), self.hbm_used(first)
                if used + nbytes * len(group) > limit:
                    self._report_oom(first, nbytes * len(group), kind, used, limit)
                    raise NrtError(
                        NrtStatus.RESOURCE,
                        f"Failed to allocate {format_size(nbytes * len(group))} (usage: {kind}) on NeuronCore "
                        f"{first}: {format_size(limit - used)} of {format_size(limit)} free on its HBM",
                    )
            for core in cores:
                self.used[core][kind] += nbytes
        if self.stats is not None:
            for core in cores:
                self.stats.add_device_memory(core, _KIND_INDEX[kind], nbytes)

    def release(self, core: int, nbytes: int, kind: str, model_id: int | None = None) -> None:
        """Give back what :meth:`reserve` accounted."""
        with self._lock:
            self.used[core][kind] = max(0, self.used[core][kind] - nbytes)
            if model_id is not None and model_id in self.by_model[core]:
                per = self.by_model[core][model_id]
                per[kind] = max(0, per[kind] - nbytes)
                if not any(per.values()):
                    del self.by_model[core][model_id]
        if self.stats is not None:
            self.stats.add_device_memory(core, _KIND_INDEX[kind], -nbytes)

    def stats_of(self, core: int) -> Mapping[str, int]:
        """Current bytes per category on ``core``."""
        return dict(self.used[core])

    # ------------------------------------------------------------------ OOM report
    def _report_oom(self, core: int, nbytes: int, kind: str, used: int, limit: int) -> None:
        device, hbm = self.instance.hbm_of_core(core)
        ncs = [c for c in self.instance.cores_sharing_hbm(core)]
        self.logger.error(
            "TDRV", "log_dev_mem",
            f"Failed to allocate {format_size(nbytes)} (alignment: none, usage: {kind}) on ND {device}:NC {core}",
        )
        if self.instance.lnc == 1 and len(ncs) > 1:
            self.logger.error("TDRV", "log_dev_mem",
                              "LNC size is 1. Neuron Cores using this HBM: " + " and ".join(f"NC {c}" for c in ncs))
        table = self.oom_table(device, ncs)
        for line in table.splitlines():
            self.logger.error("TDRV", "log_dev_mem", line)
        path = Path(tempfile.gettempdir()) / f"neuron_mem_table_device_{device}_hbm_{hbm}.log"
        try:
            path.write_text(table + "\n", encoding="utf-8")
        except OSError as exc:
            self.logger.warn("TDRV", "log_dev_mem", f"could not save the memory table to {path}: {exc.strerror}")
        if self.syslog is not None:
            line = (f"kernel: neuron:mc_alloc: device mempool [{device}:{hbm}] total {limit} occupied {used} "
                    f"needed {nbytes} available {limit - used}")
            with contextlib.suppress(OSError):  # the OOM report itself was logged; the kernel line is extra
                append_state_text(self.syslog, f"{socket.gethostname()} {line}\n")

    def oom_table(self, device: int, cores: Sequence[int]) -> str:
        """The per-HBM usage table libnrt prints on OOM (ND overall, each NC, each NEFF, then NEFF names)."""
        def row(label: str, usage: Mapping[str, int]) -> list[str]:
            values = [
                sum(usage.values()), usage.get("model_code", 0), usage.get("constants", 0), usage.get("tensors", 0),
                usage.get("model_shared_scratchpad", 0), 0, usage.get("runtime_memory", 0), 0, 0, 0, 0, 0, 0, 0,
            ]
            return [label] + [format_size(v) for v in values]

        rows: list[list[str]] = []
        overall = dict.fromkeys(DEVICE_MEMORY_KINDS, 0)
        for core in cores:
            for kind, value in self.used.get(core, {}).items():
                overall[kind] += value
        rows.append(row(f"ND {device} Overall", overall))
        neff_ids: list[int] = []
        for core in cores:
            rows.append(row(f"\\_NC {core}", self.used.get(core, {})))
            for model_id, usage in sorted(self.by_model.get(core, {}).items()):
                rows.append(row(f"  \\_NEFF {model_id}", usage))
                neff_ids.append(model_id)
        header = ["", *_TABLE_COLUMNS]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(r))
                 for r in [header, *rows]]
        lines.append("NEFF id to name mapping:")
        lines += [f"  {model_id}: {self.model_names.get(model_id, '?')}" for model_id in neff_ids]
        return "\n".join(lines)
