"""The instance catalogue: every Inf1/Inf2/Trn1/Trn2 size nrt_lab can emulate (docs/behaviour.md §6).

Each :class:`InstanceSpec` is pure data: devices with their PCI address, CPU affinity, NUMA node, links,
logical NeuronCores and memory, plus the names other layers print (neuron-monitor, sysfs, nrt_instance_info).

Where the values come from
--------------------------
Real ``neuron-ls`` outputs (public sources) were copied where they exist; everything else is inferred,
deterministic and marked *(inf)* below.

* **trn2.48xlarge / trn2u.48xlarge**: BDFs, CPU affinity and NUMA nodes of the trn2n.48xlarge example in
  aws-neuron-sdk ``tools/neuron-sys-tools/neuron-ls.rst`` (devices 0-3, 12-15 on NUMA 1 ``48-95,144-191``,
  4-11 on NUMA 0 ``0-47,96-143``; BDFs ``cc:00.0``, ``b5:00.0``, ...). trn2u uses the same layout *(inf)*.
* **trn1.32xlarge / trn1n.32xlarge**: a real trn1.32xlarge ``neuron-ls`` pasted in a public SageMaker
  HyperPod write-up (BDFs ``0000:10:1b.0`` ..., affinity ``0-31,64-95`` / ``32-63,96-127``). trn1n copies
  it *(inf)*.
* **trn1.2xlarge**: real output ``0000:00:1e.0``, affinity ``0-7``, NUMA ``-1``.
* **inf2.48xlarge**: BDFs and the ring ``0 → [11, 1]`` from a real (older, short-BDF) ``neuron-ls`` in a public
  blog post; the ``0000:`` domain, CPU affinity and NUMA nodes (buses 10/20 → node 0, 80/90 → node 1) are
  *(inf)*.
* **inf2.24xlarge**: a real output dated 2026-05 (BDFs, ``24-47,72-95`` / ``0-23,48-71``, NUMA 1/0). It shows
  an open chain ``0 → [1]``, ``5 → [4]``, not the ring docs/behaviour.md §6 names; nrt_lab follows the real output.
* **inf2.8xlarge**: real BDF ``00:1f.0``; inf2.xlarge copies it *(inf)*; CPU affinity = all vCPUs, NUMA -1 *(inf)*.
* **inf1.6xlarge**: real output (``0000:00:1c.0`` … ``1f.0``, affinity ``0-23``, NUMA ``-1``) and the documented chain
  ``0:[1] 1:[2,0] 2:[3,1] 3:[2]``. **inf1.xlarge**: real BDF ``0000:00:1f.0``; inf1.2xlarge copies it *(inf)*.
* **inf1.24xlarge**: first BDFs ``0000:00:10.0``, ``11.0``, ``12.0`` from aws-neuron-sdk issue #61; the rest
  continue the sequence to ``1f.0`` *(inf)*; ring in inf1's ``[next, previous]`` order *(inf)*; NUMA 0/1 halves
  *(inf)*.
* Torus neighbours ``[up, left, down, right]`` are computed (:mod:`nrt_lab.hardware.topology`) and match
  every public trn1/trn2 table.
* Names: neuron-monitor ``neuron_device_type``/``neuron_device_version``/``neuroncore_version``
  (inf2: ``inferentia2``/``v3``/``v2`` from a real report; trn2: ``trainium2``/``v4``/``v3d``|``v3`` per the documentation);
  sysfs ``arch_type``/``instance_type``/``device_name`` and PCI device ids per docs/behaviour.md §6 (inf1 uses the first of
  0x7064–0x7067); ``nrt_family``/``nrt_size`` per docs/behaviour.md §3.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from nrt_lab.hardware.topology import NeighbourOrder, chain_table, ring_table, torus_table

__all__ = [
    "CatalogueError",
    "UnknownInstanceError",
    "DeviceSpec",
    "InstanceSpec",
    "FAMILIES",
    "GIB",
    "instance_names",
    "get_instance",
]

GIB = 1 << 30
FAMILIES = ("inf1", "inf2", "trn1", "trn1n", "trn2", "trn2u")
_LNC_FAMILIES = ("trn2", "trn2u")
_MAX_DEVICES = 64  # docs/behaviour.md §6: at most 64 devices and 8 NCs per device
_MAX_CORES_PER_DEVICE = 8

_BDF_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_CPULIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$", re.ASCII)


class CatalogueError(ValueError):
    """An instance description is invalid (bad JSON field, bad LNC choice, ...)."""


class UnknownInstanceError(CatalogueError):
    """The instance type is not one nrt_lab emulates."""


@dataclass(frozen=True)
class DeviceSpec:
    """One Neuron device as ``neuron-ls`` lists it."""

    index: int
    bdf: str  # full PCI BDF, "0000:10:1c.0"; neuron-ls -w/-t print the short "10:1c.0"
    cpu_affinity: str  # cpulist, e.g. "0-31,64-95"
    numa_node: int  # -1 if unknown
    connected_to: tuple[int, ...]  # neighbours in neuron-ls order
    core_count: int  # logical NeuronCores on this device
    first_core: int  # global id of its first logical core
    memory_bytes: int

    @property
    def short_bdf(self) -> str:
        """The BDF without its PCI domain (``cc:00.0``), as ``neuron-ls -w``/``-t`` print it."""
        domain, _, rest = self.bdf.partition(":")
        return rest if domain == "0000" else self.bdf

    @property
    def cores(self) -> range:
        """Global logical NeuronCore ids of this device."""
        return range(self.first_core, self.first_core + self.core_count)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists for tuples)."""
        return {
            "index": self.index,
            "bdf": self.bdf,
            "cpu_affinity": self.cpu_affinity,
            "numa_node": self.numa_node,
            "connected_to": list(self.connected_to),
            "core_count": self.core_count,
            "first_core": self.first_core,
            "memory_bytes": self.memory_bytes,
        }


@dataclass(frozen=True)
class InstanceSpec:
    """An EC2 instance type with its Neuron devices, at one logical-NeuronCore configuration."""

    name: str
    family: str
    lnc: int
    neuroncore_version: str
    neuron_device_type: str
    neuron_device_version: str
    pci_device_id: int
    sysfs_arch: tuple[str, str, str, str]
    nrt_family: int
    nrt_size: int
    devices: tuple[DeviceSpec, ...]
    physical_cores_per_device: int
    hbm_per_device: int
    exec_timeout_default_s: int

    @cached_property
    def total_cores(self) -> int:
        """Number of logical NeuronCores on the instance."""
        return sum(d.core_count for d in self.devices)

    @cached_property
    def _core_layout(self) -> tuple[tuple[tuple[int, int], ...], dict[tuple[int, int], tuple[int, ...]]]:
        """Per logical core its (device, HBM stack), and the cores of each HBM stack: computed once per spec,
        since allocation and memory accounting ask per core (128 cores on trn2 at LNC 1)."""
        placement: list[tuple[int, int]] = []
        sharing: dict[tuple[int, int], list[int]] = {}
        for dev in self.devices:
            for local, core in enumerate(dev.cores):
                where = (dev.index, local * self.hbm_per_device // dev.core_count)
                placement.append(where)
                sharing.setdefault(where, []).append(core)
        return tuple(placement), {where: tuple(cores) for where, cores in sharing.items()}

    @property
    def device_count(self) -> int:
        """Number of Neuron devices."""
        return len(self.devices)

    def _check_core(self, core: int) -> None:
        if isinstance(core, bool) or not isinstance(core, int) or not 0 <= core < self.total_cores:
            raise ValueError(
                f"NeuronCore {core!r} does not exist on {self.name} (valid: 0-{self.total_cores - 1})"
            )

    def device_of_core(self, core: int) -> int:
        """Index of the device holding logical NeuronCore ``core``."""
        self._check_core(core)
        return self._core_layout[0][core][0]

    def cores_of_device(self, dev: int) -> range:
        """Global logical NeuronCore ids of device ``dev``."""
        if isinstance(dev, bool) or not isinstance(dev, int) or not 0 <= dev < len(self.devices):
            raise ValueError(
                f"Neuron device {dev!r} does not exist on {self.name} (valid: 0-{len(self.devices) - 1})"
            )
        return self.devices[dev].cores

    def hbm_of_core(self, core: int) -> tuple[int, int]:
        """(device, HBM stack index) whose memory logical core ``core`` allocates from."""
        self._check_core(core)
        return self._core_layout[0][core]

    def cores_sharing_hbm(self, core: int) -> tuple[int, ...]:
        """All logical cores (``core`` included) that allocate from the same HBM stack as ``core``."""
        return self._core_layout[1][self.hbm_of_core(core)]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict; :meth:`from_json` reads it back exactly."""
        return {
            "name": self.name,
            "family": self.family,
            "lnc": self.lnc,
            "neuroncore_version": self.neuroncore_version,
            "neuron_device_type": self.neuron_device_type,
            "neuron_device_version": self.neuron_device_version,
            "pci_device_id": self.pci_device_id,
            "sysfs_arch": list(self.sysfs_arch),
            "nrt_family": self.nrt_family,
            "nrt_size": self.nrt_size,
            "devices": [d.to_json() for d in self.devices],
            "physical_cores_per_device": self.physical_cores_per_device,
            "hbm_per_device": self.hbm_per_device,
            "exec_timeout_default_s": self.exec_timeout_default_s,
        }

    @classmethod
    def from_json(cls, d: Any) -> InstanceSpec:
        """Strictly rebuild an instance from :meth:`to_json` output; CatalogueError names the bad field."""
        return _instance_from_json(d)


# --------------------------------------------------------------------------------------------------
# strict JSON reading
# --------------------------------------------------------------------------------------------------

_INSTANCE_KEYS = (
    "name", "family", "lnc", "neuroncore_version", "neuron_device_type", "neuron_device_version",
    "pci_device_id", "sysfs_arch", "nrt_family", "nrt_size", "devices", "physical_cores_per_device",
    "hbm_per_device", "exec_timeout_default_s",
)  # fmt: skip
_DEVICE_KEYS = (
    "index", "bdf", "cpu_affinity", "numa_node", "connected_to", "core_count", "first_core", "memory_bytes",
)  # fmt: skip


def _fail(field: str, message: str) -> CatalogueError:
    return CatalogueError(f"invalid instance description: field '{field}': {message}")


def _check_keys(obj: Any, keys: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(where or "<root>", f"expected an object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        prefix = f"{where}." if where else ""
        raise _fail(prefix + missing[0], "missing")
    unknown = sorted(str(k) for k in obj if k not in keys)
    if unknown:
        prefix = f"{where}." if where else ""
        raise _fail(prefix + unknown[0], "unknown field")
    return obj


def _int(obj: dict[str, Any], key: str, field: str, lo: int | None = None, hi: int | None = None) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"expected an integer, got {value!r}")
    if lo is not None and value < lo:
        raise _fail(field, f"{value} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise _fail(field, f"{value} is above the maximum {hi}")
    return value


def _str(obj: dict[str, Any], key: str, field: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise _fail(field, f"expected a non-empty string, got {value!r}")
    return value


def _device_from_json(obj: Any, position: int, lnc: int, physical: int, device_count: int) -> DeviceSpec:
    where = f"devices[{position}]"
    d = _check_keys(obj, _DEVICE_KEYS, where)
    index = _int(d, "index", f"{where}.index", 0)
    if index != position:
        raise _fail(f"{where}.index", f"devices must be listed in order: expected {position}, got {index}")
    bdf = _str(d, "bdf", f"{where}.bdf")
    if not _BDF_RE.match(bdf):
        raise _fail(f"{where}.bdf", f"{bdf!r} is not a full PCI BDF like '0000:10:1c.0'")
    cpu = _str(d, "cpu_affinity", f"{where}.cpu_affinity")
    if not _CPULIST_RE.match(cpu):
        raise _fail(f"{where}.cpu_affinity", f"{cpu!r} is not a cpulist like '0-31,64-95'")
    numa = _int(d, "numa_node", f"{where}.numa_node", -1)
    links = d["connected_to"]
    if not isinstance(links, list):
        raise _fail(f"{where}.connected_to", f"expected a list of device indices, got {links!r}")
    for n in links:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < device_count or n == index:
            raise _fail(f"{where}.connected_to", f"{n!r} is not another device index (0-{device_count - 1})")
    if len(set(links)) != len(links):
        raise _fail(f"{where}.connected_to", f"duplicate neighbour in {links!r}")
    cores = _int(d, "core_count", f"{where}.core_count", 1, _MAX_CORES_PER_DEVICE)
    if cores * lnc != physical:
        raise _fail(
            f"{where}.core_count",
            f"{cores} logical cores x lnc {lnc} != physical_cores_per_device {physical}",
        )
    first = _int(d, "first_core", f"{where}.first_core", 0)
    memory = _int(d, "memory_bytes", f"{where}.memory_bytes", 1)
    return DeviceSpec(index, bdf, cpu, numa, tuple(links), cores, first, memory)


def _instance_from_json(obj: Any) -> InstanceSpec:
    d = _check_keys(obj, _INSTANCE_KEYS, "")
    name = _str(d, "name", "name")
    family = _str(d, "family", "family")
    if family not in FAMILIES:
        raise _fail("family", f"{family!r} is not one of {', '.join(FAMILIES)}")
    lnc = _int(d, "lnc", "lnc")
    allowed_lnc = (1, 2) if family in _LNC_FAMILIES else (1,)
    if lnc not in allowed_lnc:
        raise _fail(
            "lnc", f"{lnc} is not accepted for {family} (accepted: {', '.join(map(str, allowed_lnc))})"
        )
    nc_version = _str(d, "neuroncore_version", "neuroncore_version")
    dev_type = _str(d, "neuron_device_type", "neuron_device_type")
    dev_version = _str(d, "neuron_device_version", "neuron_device_version")
    pci = _int(d, "pci_device_id", "pci_device_id", 0, 0xFFFF)
    arch = d["sysfs_arch"]
    if not isinstance(arch, list) or len(arch) != 4 or not all(isinstance(a, str) and a for a in arch):
        raise _fail("sysfs_arch", f"expected 4 non-empty strings, got {arch!r}")
    nrt_family = _int(d, "nrt_family", "nrt_family", 0)
    nrt_size = _int(d, "nrt_size", "nrt_size", 0)
    physical = _int(d, "physical_cores_per_device", "physical_cores_per_device", 1, _MAX_CORES_PER_DEVICE)
    hbm = _int(d, "hbm_per_device", "hbm_per_device", 1, physical)
    timeout = _int(d, "exec_timeout_default_s", "exec_timeout_default_s", 0)
    raw_devices = d["devices"]
    if not isinstance(raw_devices, list) or not 1 <= len(raw_devices) <= _MAX_DEVICES:
        raise _fail("devices", f"expected a list of 1 to {_MAX_DEVICES} devices")
    devices = tuple(
        _device_from_json(raw, i, lnc, physical, len(raw_devices)) for i, raw in enumerate(raw_devices)
    )
    expected_first = 0
    for dev in devices:
        if dev.first_core != expected_first:
            raise _fail(
                f"devices[{dev.index}].first_core",
                f"cores must be numbered contiguously: expected {expected_first}, got {dev.first_core}",
            )
        expected_first += dev.core_count
        for n in dev.connected_to:
            if dev.index not in devices[n].connected_to:
                raise _fail(
                    f"devices[{dev.index}].connected_to",
                    f"link to device {n} is not listed by device {n} (links are symmetric)",
                )
    return InstanceSpec(
        name=name,
        family=family,
        lnc=lnc,
        neuroncore_version=nc_version,
        neuron_device_type=dev_type,
        neuron_device_version=dev_version,
        pci_device_id=pci,
        sysfs_arch=(arch[0], arch[1], arch[2], arch[3]),
        nrt_family=nrt_family,
        nrt_size=nrt_size,
        devices=devices,
        physical_cores_per_device=physical,
        hbm_per_device=hbm,
        exec_timeout_default_s=timeout,
    )


# --------------------------------------------------------------------------------------------------
# the catalogue
# --------------------------------------------------------------------------------------------------

# nrt_instance_info family / size enums (docs/behaviour.md §3)
_NRT_FAMILY = {"inf1": 1, "trn1": 2, "trn1n": 3, "inf2": 4, "trn2": 5, "trn2u": 9}
_NRT_SIZE = {"xlarge": 0, "2xlarge": 1, "4xlarge": 2, "6xlarge": 3, "8xlarge": 4, "24xlarge": 5, "32xlarge": 6,
             "48xlarge": 7, "3xlarge": 8}  # fmt: skip


@dataclass(frozen=True)
class _Family:
    neuron_device_type: str
    neuron_device_version: str
    pci_device_id: int
    sysfs_arch: tuple[str, str, str, str]
    physical_cores: int
    memory_bytes: int
    hbm_per_device: int
    exec_timeout_s: int


_INF1 = _Family("inferentia", "v1", 0x7064, ("NCv1", "NDv1", "Inf1", "Inferentia"), 4, 8 * GIB, 1, 30)
_INF2 = _Family("inferentia2", "v3", 0x7264, ("NCv2", "NDv3", "Inf2", "Inferentia2"), 2, 32 * GIB, 1, 600)
_TRN1 = _Family("trainium", "v2", 0x7164, ("NCv2", "NDv2", "Trn1", "Trainium1"), 2, 32 * GIB, 2, 600)
_TRN2 = _Family("trainium2", "v4", 0x7364, ("NCv3", "NDv3", "Trn2", "Trainium2"), 8, 96 * GIB, 4, 600)
_FAMILY_DATA = {"inf1": _INF1, "inf2": _INF2, "trn1": _TRN1, "trn1n": _TRN1, "trn2": _TRN2, "trn2u": _TRN2}

# Per-device placement: (bdf, cpu_affinity, numa_node)
_Placement = tuple[str, str, int]


def _one(bdf: str, cpus: str) -> list[_Placement]:
    return [(bdf, cpus, -1)]


_INF1_6XL = [(f"0000:00:{b:02x}.0", "0-23", -1) for b in range(0x1C, 0x20)]
_INF1_24XL = [
    (f"0000:00:{0x10 + i:02x}.0", "0-23,48-71" if i < 8 else "24-47,72-95", 0 if i < 8 else 1)
    for i in range(16)
]
_INF2_24XL_N0 = ("0-23,48-71", 0)
_INF2_24XL_N1 = ("24-47,72-95", 1)
_INF2_24XL = [
    ("0000:20:1e.0", *_INF2_24XL_N1),
    ("0000:20:1f.0", *_INF2_24XL_N1),
    ("0000:10:1e.0", *_INF2_24XL_N0),
    ("0000:10:1f.0", *_INF2_24XL_N0),
    ("0000:10:1d.0", *_INF2_24XL_N0),
    ("0000:20:1d.0", *_INF2_24XL_N1),
]
_N0_192 = ("0-47,96-143", 0)
_N1_192 = ("48-95,144-191", 1)
_INF2_48XL = [
    (f"0000:{bus_dev}.0", *(_N1_192 if bus_dev[0] in "89" else _N0_192))
    for bus_dev in ("80:1e", "90:1e", "80:1d", "90:1f", "80:1f", "90:1d",
                    "20:1e", "20:1f", "10:1e", "10:1f", "10:1d", "20:1d")
]  # fmt: skip
_N0_128 = ("0-31,64-95", 0)
_N1_128 = ("32-63,96-127", 1)
_TRN1_32XL = [
    (f"0000:{bus_dev}.0", *(_N1_128 if bus_dev[0] in "9a" else _N0_128))
    for bus_dev in ("10:1b", "10:1e", "a0:1b", "a0:1e", "20:1e", "20:1c", "90:1e", "90:1c",
                    "20:1d", "20:1b", "90:1d", "90:1b", "10:1c", "10:1d", "a0:1c", "a0:1d")
]  # fmt: skip
_TRN2_48XL = [
    (f"0000:{bus}:00.0", *(_N1_192 if i in (0, 1, 2, 3, 12, 13, 14, 15) else _N0_192))
    for i, bus in enumerate(("cc", "b5", "b6", "cb", "6f", "58", "59", "6e",
                             "9b", "84", "85", "9a", "f8", "e1", "e2", "f7"))
]  # fmt: skip


def _single() -> tuple[tuple[int, ...], ...]:
    return ((),)


def _chain(count: int, order: NeighbourOrder) -> Callable[[], tuple[tuple[int, ...], ...]]:
    return lambda: chain_table(count, order)


def _ring(count: int, order: NeighbourOrder) -> Callable[[], tuple[tuple[int, ...], ...]]:
    return lambda: ring_table(count, order)


# name -> (family, placements, links)
_INSTANCES: dict[str, tuple[str, list[_Placement], Callable[[], tuple[tuple[int, ...], ...]]]] = {
    "inf1.xlarge": ("inf1", _one("0000:00:1f.0", "0-3"), _single),
    "inf1.2xlarge": ("inf1", _one("0000:00:1f.0", "0-7"), _single),
    "inf1.6xlarge": ("inf1", _INF1_6XL, _chain(4, "next_prev")),
    "inf1.24xlarge": ("inf1", _INF1_24XL, _ring(16, "next_prev")),
    "inf2.xlarge": ("inf2", _one("0000:00:1f.0", "0-3"), _single),
    "inf2.8xlarge": ("inf2", _one("0000:00:1f.0", "0-31"), _single),
    "inf2.24xlarge": ("inf2", _INF2_24XL, _chain(6, "prev_next")),
    "inf2.48xlarge": ("inf2", _INF2_48XL, _ring(12, "prev_next")),
    "trn1.2xlarge": ("trn1", _one("0000:00:1e.0", "0-7"), _single),
    "trn1.32xlarge": ("trn1", _TRN1_32XL, torus_table),
    "trn1n.32xlarge": ("trn1n", _TRN1_32XL, torus_table),
    "trn2.48xlarge": ("trn2", _TRN2_48XL, torus_table),
    "trn2u.48xlarge": ("trn2u", _TRN2_48XL, torus_table),
}


def _build(name: str, lnc: int) -> InstanceSpec:
    family, placements, links = _INSTANCES[name]
    fam = _FAMILY_DATA[family]
    core_count = fam.physical_cores // lnc
    table = links()
    devices = tuple(
        DeviceSpec(
            index=i,
            bdf=bdf,
            cpu_affinity=cpus,
            numa_node=numa,
            connected_to=tuple(table[i]),
            core_count=core_count,
            first_core=i * core_count,
            memory_bytes=fam.memory_bytes,
        )
        for i, (bdf, cpus, numa) in enumerate(placements)
    )
    if family in _LNC_FAMILIES:
        nc_version = "v3d" if lnc == 2 else "v3"
    else:
        nc_version = {"inf1": "v1"}.get(family, "v2")
    return InstanceSpec(
        name=name,
        family=family,
        lnc=lnc,
        neuroncore_version=nc_version,
        neuron_device_type=fam.neuron_device_type,
        neuron_device_version=fam.neuron_device_version,
        pci_device_id=fam.pci_device_id,
        sysfs_arch=fam.sysfs_arch,
        nrt_family=_NRT_FAMILY[family],
        nrt_size=_NRT_SIZE[name.split(".", 1)[1]],
        devices=devices,
        physical_cores_per_device=fam.physical_cores,
        hbm_per_device=fam.hbm_per_device,
        exec_timeout_default_s=fam.exec_timeout_s,
    )


_CACHE: dict[tuple[str, int], InstanceSpec] = {}


def instance_names() -> list[str]:
    """Every instance type nrt_lab emulates, in catalogue order."""
    return list(_INSTANCES)


def get_instance(name: str, lnc: int | None = None) -> InstanceSpec:
    """The catalogue entry for ``name`` at logical-NeuronCore config ``lnc`` (default 2 on trn2, else 1)."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _INSTANCES:
        raise UnknownInstanceError(
            f"unknown instance type {name!r}; accepted instance types: {', '.join(_INSTANCES)}"
        )
    family = _INSTANCES[key][0]
    accepted = (1, 2) if family in _LNC_FAMILIES else (1,)
    if lnc is None:
        lnc = 2 if family in _LNC_FAMILIES else 1
    if isinstance(lnc, bool) or lnc not in accepted:
        raise CatalogueError(
            f"logical NeuronCore config {lnc!r} is not accepted for {key}; "
            f"accepted: {', '.join(map(str, accepted))}"
        )
    cached = _CACHE.get((key, lnc))
    if cached is None:
        cached = _CACHE[(key, lnc)] = _build(key, lnc)
    return cached
