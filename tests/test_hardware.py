"""The instance catalogue and topology helpers of :mod:`nrt_lab.hardware` (docs/behaviour.md §6)."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from nrt_lab.hardware import (
    GIB,
    CatalogueError,
    InstanceSpec,
    UnknownInstanceError,
    classify,
    get_instance,
    instance_names,
)
from nrt_lab.hardware import topology as topo

ALL_NAMES = [
    "inf1.xlarge",
    "inf1.2xlarge",
    "inf1.6xlarge",
    "inf1.24xlarge",
    "inf2.xlarge",
    "inf2.8xlarge",
    "inf2.24xlarge",
    "inf2.48xlarge",
    "trn1.2xlarge",
    "trn1.32xlarge",
    "trn1n.32xlarge",
    "trn2.48xlarge",
    "trn2u.48xlarge",
]

# name -> (devices, logical cores per device at the default LNC, memory per device, family, topology)
EXPECTED: dict[str, tuple[int, int, int, str, str]] = {
    "inf1.xlarge": (1, 4, 8 * GIB, "inf1", "single"),
    "inf1.2xlarge": (1, 4, 8 * GIB, "inf1", "single"),
    "inf1.6xlarge": (4, 4, 8 * GIB, "inf1", "chain"),
    "inf1.24xlarge": (16, 4, 8 * GIB, "inf1", "ring"),
    "inf2.xlarge": (1, 2, 32 * GIB, "inf2", "single"),
    "inf2.8xlarge": (1, 2, 32 * GIB, "inf2", "single"),
    "inf2.24xlarge": (6, 2, 32 * GIB, "inf2", "chain"),
    "inf2.48xlarge": (12, 2, 32 * GIB, "inf2", "ring"),
    "trn1.2xlarge": (1, 2, 32 * GIB, "trn1", "single"),
    "trn1.32xlarge": (16, 2, 32 * GIB, "trn1", "torus"),
    "trn1n.32xlarge": (16, 2, 32 * GIB, "trn1n", "torus"),
    "trn2.48xlarge": (16, 4, 103079215104, "trn2", "torus"),
    "trn2u.48xlarge": (16, 4, 103079215104, "trn2u", "torus"),
}

VARIANTS = [(n, lnc) for n in ALL_NAMES for lnc in ((1, 2) if n.startswith("trn2") else (1,))]


def test_instance_names_in_catalogue_order() -> None:
    assert instance_names() == ALL_NAMES


@pytest.mark.parametrize("name", ALL_NAMES)
def test_devices_cores_memory(name: str) -> None:
    devices, cpd, memory, family, kind = EXPECTED[name]
    spec = get_instance(name)
    assert spec.name == name
    assert spec.family == family
    assert spec.device_count == len(spec.devices) == devices
    assert spec.total_cores == devices * cpd
    assert [d.index for d in spec.devices] == list(range(devices))
    assert all(d.core_count == cpd and d.memory_bytes == memory for d in spec.devices)
    assert [d.first_core for d in spec.devices] == [i * cpd for i in range(devices)]
    assert classify([d.connected_to for d in spec.devices]) == kind
    assert spec.exec_timeout_default_s == (30 if family == "inf1" else 600)


def test_memory_sizes_are_exact() -> None:
    assert get_instance("trn2.48xlarge").devices[0].memory_bytes == 103079215104
    assert get_instance("trn1.32xlarge").devices[0].memory_bytes == 34359738368
    assert get_instance("inf2.xlarge").devices[0].memory_bytes == 34359738368
    assert get_instance("inf1.xlarge").devices[0].memory_bytes == 8589934592


@pytest.mark.parametrize("name", ["trn1.32xlarge", "trn1n.32xlarge", "trn2.48xlarge", "trn2u.48xlarge"])
def test_torus_neighbours_match_neuron_ls(name: str) -> None:
    links = {d.index: d.connected_to for d in get_instance(name).devices}
    assert links[0] == (12, 3, 4, 1)
    assert links[5] == (1, 4, 9, 6)
    assert links[10] == (6, 9, 14, 11)
    assert links[12] == (8, 15, 0, 13)
    assert links[15] == (11, 14, 3, 12)


def test_inf1_6xlarge_chain_exactly_as_spec() -> None:
    links = [d.connected_to for d in get_instance("inf1.6xlarge").devices]
    assert links == [(1,), (2, 0), (3, 1), (2,)]


def test_inf1_24xlarge_ring_next_previous() -> None:
    links = [d.connected_to for d in get_instance("inf1.24xlarge").devices]
    assert links[0] == (1, 15)
    assert links[1] == (2, 0)
    assert links[15] == (0, 14)


def test_inf2_48xlarge_ring_previous_next() -> None:
    links = [d.connected_to for d in get_instance("inf2.48xlarge").devices]
    assert links[0] == (11, 1)
    assert links[1] == (0, 2)
    assert links[11] == (10, 0)


def test_inf2_24xlarge_open_chain_as_real_output() -> None:
    links = [d.connected_to for d in get_instance("inf2.24xlarge").devices]
    assert links == [(1,), (0, 2), (1, 3), (2, 4), (3, 5), (4,)]


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if EXPECTED[n][0] == 1])
def test_single_device_instances_have_no_links(name: str) -> None:
    assert get_instance(name).devices[0].connected_to == ()


@pytest.mark.parametrize(("name", "lnc"), VARIANTS)
def test_device_data_is_well_formed(name: str, lnc: int) -> None:
    spec = get_instance(name, lnc)
    bdfs = [d.bdf for d in spec.devices]
    assert len(set(bdfs)) == len(bdfs)
    for d in spec.devices:
        assert re.fullmatch(r"0000:[0-9a-f]{2}:[0-9a-f]{2}\.0", d.bdf)
        assert d.short_bdf == d.bdf[5:]
        assert re.fullmatch(r"\d+-\d+(,\d+-\d+)?", d.cpu_affinity)
        assert d.numa_node >= -1
        for n in d.connected_to:
            assert spec.devices[n].connected_to.count(d.index) == 1


def test_real_placements() -> None:
    trn1 = get_instance("trn1.32xlarge").devices
    assert (trn1[0].bdf, trn1[0].cpu_affinity, trn1[0].numa_node) == ("0000:10:1b.0", "0-31,64-95", 0)
    assert (trn1[2].bdf, trn1[2].cpu_affinity, trn1[2].numa_node) == ("0000:a0:1b.0", "32-63,96-127", 1)
    trn2 = get_instance("trn2.48xlarge").devices
    assert (trn2[0].bdf, trn2[0].cpu_affinity, trn2[0].numa_node) == ("0000:cc:00.0", "48-95,144-191", 1)
    assert (trn2[4].bdf, trn2[4].cpu_affinity, trn2[4].numa_node) == ("0000:6f:00.0", "0-47,96-143", 0)
    assert get_instance("trn1.2xlarge").devices[0].cpu_affinity == "0-7"
    assert get_instance("inf1.6xlarge").devices[3].bdf == "0000:00:1f.0"
    assert get_instance("inf2.48xlarge").devices[0].short_bdf == "80:1e.0"


def test_trn2_lnc_variants() -> None:
    default = get_instance("trn2.48xlarge")
    lnc2 = get_instance("trn2.48xlarge", 2)
    lnc1 = get_instance("trn2.48xlarge", 1)
    assert default == lnc2 and default.lnc == 2
    assert (lnc2.total_cores, lnc2.devices[0].core_count, lnc2.neuroncore_version) == (64, 4, "v3d")
    assert (lnc1.total_cores, lnc1.devices[0].core_count, lnc1.neuroncore_version) == (128, 8, "v3")
    assert lnc1.physical_cores_per_device == lnc2.physical_cores_per_device == 8
    assert get_instance("trn2u.48xlarge", 1).total_cores == 128
    assert lnc1.cores_of_device(1) == range(8, 16)
    assert lnc2.cores_of_device(1) == range(4, 8)


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if not n.startswith("trn2")])
def test_lnc_other_than_1_rejected_off_trn2(name: str) -> None:
    assert get_instance(name, 1).lnc == 1
    assert get_instance(name).lnc == 1
    with pytest.raises(CatalogueError, match=r"accepted: 1$"):
        get_instance(name, 2)


@pytest.mark.parametrize("lnc", [0, 3, 4, -1, True])
def test_lnc_out_of_range(lnc: int) -> None:
    with pytest.raises(CatalogueError, match=r"accepted: 1, 2"):
        get_instance("trn2.48xlarge", lnc)


@pytest.mark.parametrize("name", ["trn3.48xlarge", "p4d.24xlarge", "", "trn1", "inf2.4xlarge"])
def test_unknown_instance(name: str) -> None:
    with pytest.raises(UnknownInstanceError) as info:
        get_instance(name)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert repr(name) in message
    for accepted in ALL_NAMES:
        assert accepted in message


def test_name_lookup_is_case_insensitive() -> None:
    assert get_instance(" TRN1.32xlarge ") is get_instance("trn1.32xlarge")


def test_names_of_other_layers() -> None:
    inf1, inf2, trn1 = get_instance("inf1.xlarge"), get_instance("inf2.xlarge"), get_instance("trn1.2xlarge")
    trn2 = get_instance("trn2.48xlarge")
    assert (inf1.neuron_device_type, inf1.neuron_device_version, inf1.neuroncore_version) == (
        "inferentia",
        "v1",
        "v1",
    )
    assert (inf2.neuron_device_type, inf2.neuron_device_version, inf2.neuroncore_version) == (
        "inferentia2",
        "v3",
        "v2",
    )
    assert (trn1.neuron_device_type, trn1.neuron_device_version, trn1.neuroncore_version) == (
        "trainium",
        "v2",
        "v2",
    )
    assert (trn2.neuron_device_type, trn2.neuron_device_version) == ("trainium2", "v4")
    assert inf1.sysfs_arch == ("NCv1", "NDv1", "Inf1", "Inferentia")
    assert trn1.sysfs_arch == ("NCv2", "NDv2", "Trn1", "Trainium1")
    assert inf2.sysfs_arch == ("NCv2", "NDv3", "Inf2", "Inferentia2")
    assert trn2.sysfs_arch == ("NCv3", "NDv3", "Trn2", "Trainium2")
    assert [x.pci_device_id for x in (inf1, trn1, inf2, trn2)] == [0x7064, 0x7164, 0x7264, 0x7364]


@pytest.mark.parametrize(
    ("name", "family", "size"),
    [
        ("inf1.xlarge", 1, 0),
        ("inf1.2xlarge", 1, 1),
        ("inf1.6xlarge", 1, 3),
        ("inf1.24xlarge", 1, 5),
        ("inf2.8xlarge", 4, 4),
        ("inf2.48xlarge", 4, 7),
        ("trn1.2xlarge", 2, 1),
        ("trn1.32xlarge", 2, 6),
        ("trn1n.32xlarge", 3, 6),
        ("trn2.48xlarge", 5, 7),
        ("trn2u.48xlarge", 9, 7),
    ],
)
def test_nrt_instance_info_enums(name: str, family: int, size: int) -> None:
    spec = get_instance(name)
    assert (spec.nrt_family, spec.nrt_size) == (family, size)


def test_core_helpers_trn2() -> None:
    lnc2 = get_instance("trn2.48xlarge", 2)
    assert lnc2.device_of_core(0) == 0 and lnc2.device_of_core(63) == 15 and lnc2.device_of_core(5) == 1
    assert lnc2.hbm_of_core(5) == (1, 1)
    assert lnc2.cores_sharing_hbm(5) == (5,)  # one HBM stack per logical core at LNC2
    lnc1 = get_instance("trn2.48xlarge", 1)
    assert lnc1.hbm_of_core(9) == (1, 0)
    assert lnc1.cores_sharing_hbm(9) == (8, 9)
    assert lnc1.cores_sharing_hbm(127) == (126, 127)


def test_core_helpers_other_families() -> None:
    trn1 = get_instance("trn1.32xlarge")
    assert trn1.hbm_of_core(3) == (1, 1)  # 2 x 16 GiB: one stack per core
    assert trn1.cores_sharing_hbm(3) == (3,)
    inf2 = get_instance("inf2.48xlarge")
    assert inf2.cores_sharing_hbm(3) == (2, 3)
    inf1 = get_instance("inf1.6xlarge")
    assert inf1.cores_sharing_hbm(6) == (4, 5, 6, 7)
    assert inf1.device_of_core(15) == 3


@pytest.mark.parametrize("bad", [-1, 32, 1000, True, "0", 1.0])
def test_core_helpers_reject_bad_ids(bad: Any) -> None:
    spec = get_instance("trn1.32xlarge")
    with pytest.raises(ValueError, match="does not exist on trn1.32xlarge"):
        spec.device_of_core(bad)
    with pytest.raises(ValueError, match="does not exist"):
        spec.cores_sharing_hbm(bad)


def test_cores_of_device_rejects_bad_device() -> None:
    with pytest.raises(ValueError, match=r"Neuron device 16 does not exist on trn1.32xlarge \(valid: 0-15\)"):
        get_instance("trn1.32xlarge").cores_of_device(16)


@pytest.mark.parametrize(("name", "lnc"), VARIANTS)
def test_json_round_trip(name: str, lnc: int) -> None:
    spec = get_instance(name, lnc)
    text = json.dumps(spec.to_json())
    again = InstanceSpec.from_json(json.loads(text))
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert isinstance(again.devices[0].connected_to, tuple)


def _corrupt(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(get_instance("trn2.48xlarge", 2).to_json())
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


_DELETE = object()

CORRUPTIONS = [
    ("name", _DELETE, "'name': missing"),
    ("extra_field", 1, "'extra_field': unknown field"),
    ("lnc", 3, "'lnc': 3 is not accepted for trn2 (accepted: 1, 2)"),
    ("lnc", "2", "'lnc': expected an integer"),
    ("family", "trn9", "'family': 'trn9' is not one of"),
    ("pci_device_id", 0x1_0000, "'pci_device_id': 65536 is above the maximum 65535"),
    ("sysfs_arch", ["NCv3", "NDv3", "Trn2"], "'sysfs_arch': expected 4 non-empty strings"),
    ("nrt_size", True, "'nrt_size': expected an integer"),
    ("devices", [], "'devices': expected a list of 1 to 64 devices"),
    ("devices.3.bdf", "cb:00.0", "'devices[3].bdf': 'cb:00.0' is not a full PCI BDF"),
    ("devices.3.cpu_affinity", "0-47;96", "'devices[3].cpu_affinity'"),
    ("devices.2.index", 7, "'devices[2].index': devices must be listed in order"),
    ("devices.2.core_count", 8, "'devices[2].core_count': 8 logical cores x lnc 2"),
    ("devices.2.first_core", 9, "'devices[2].first_core': cores must be numbered contiguously"),
    ("devices.0.connected_to", [12, 3, 4, 0], "'devices[0].connected_to': 0 is not another device"),
    ("devices.0.connected_to", [12, 3, 4, 16], "'devices[0].connected_to': 16 is not another device"),
    ("devices.0.connected_to", [12, 3, 4, 5], "'devices[0].connected_to': link to device 5 is not listed"),
    ("devices.0.connected_to", (12, 3, 4, 1), "'devices[0].connected_to': expected a list"),
    ("devices.1.numa_node", -2, "'devices[1].numa_node': -2 is below the minimum -1"),
    ("devices.1.memory_bytes", 0, "'devices[1].memory_bytes': 0 is below the minimum 1"),
    ("devices.1.memory_bytes", _DELETE, "'devices[1].memory_bytes': missing"),
    ("devices.1", "oops", "'devices[1]': expected an object"),
    ("hbm_per_device", 9, "'hbm_per_device': 9 is above the maximum 8"),
    ("neuroncore_version", "", "'neuroncore_version': expected a non-empty string"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), CORRUPTIONS, ids=[c[0] + ":" + c[2][:30] for c in CORRUPTIONS]
)
def test_from_json_is_strict(path: str, value: Any, message: str) -> None:
    with pytest.raises(CatalogueError) as info:
        InstanceSpec.from_json(_corrupt(path, value))
    assert message in str(info.value)


@pytest.mark.parametrize("bad", [None, [], "trn1.32xlarge", 3])
def test_from_json_rejects_non_objects(bad: Any) -> None:
    with pytest.raises(CatalogueError, match="'<root>': expected an object"):
        InstanceSpec.from_json(bad)


def test_from_json_lnc_2_off_trn2() -> None:
    data = get_instance("trn1.32xlarge").to_json()
    data["lnc"] = 2
    with pytest.raises(CatalogueError, match=r"'lnc': 2 is not accepted for trn1 \(accepted: 1\)"):
        InstanceSpec.from_json(data)


# ----------------------------------------------------------------------------------------------- topology


def test_torus_neighbours_helper() -> None:
    assert topo.torus_neighbours(0) == (12, 3, 4, 1)
    assert topo.torus_neighbours(5) == (1, 4, 9, 6)
    assert topo.grid_position(5) == (1, 1)
    assert topo.grid_position(15) == (3, 3)
    with pytest.raises(ValueError):
        topo.torus_neighbours(16)


def test_ring_and_chain_helpers() -> None:
    assert topo.ring_neighbours(0, 12) == (11, 1)
    assert topo.ring_neighbours(0, 16, "next_prev") == (1, 15)
    assert topo.ring_neighbours(0, 2) == (1,)
    assert topo.ring_neighbours(0, 1) == ()
    assert topo.chain_neighbours(1, 4, "next_prev") == (2, 0)
    assert topo.chain_neighbours(3, 4, "next_prev") == (2,)
    assert topo.chain_neighbours(0, 1) == ()
    with pytest.raises(ValueError):
        topo.chain_neighbours(4, 4)


def test_classify() -> None:
    assert topo.classify([()]) == "single"
    assert topo.classify(topo.chain_table(4, "next_prev")) == "chain"
    assert topo.classify(topo.ring_table(12)) == "ring"
    assert topo.classify(topo.torus_table()) == "torus"
    with pytest.raises(ValueError):
        topo.classify([])
    with pytest.raises(ValueError):
        topo.classify([(1,), (0,), ()])


def test_hardware_imports_nothing_else_from_nrt_lab() -> None:
    package = Path(__file__).resolve().parents[1] / "nrt_lab" / "hardware"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nrt_lab"):
                assert node.module.startswith("nrt_lab.hardware"), (source.name, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("nrt_lab") or alias.name.startswith("nrt_lab.hardware")
