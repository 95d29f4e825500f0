"""``neuron-ls`` renderers (docs/behaviour.md §7) against golden files, plus Ray's ``--json-output`` parser.

Golden files live in ``tests/golden/neuron_ls/``; they are the specification of the output, reviewed by eye.
Regenerate them with ``NRT_LAB_UPDATE_GOLDEN=1 pytest tests/test_neuron_ls_render.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nrt_lab.driver.owners import OwnerRecord
from nrt_lab.hardware import InstanceSpec, get_instance, instance_names
from nrt_lab.tools.neuron_ls_render import (
    format_core_ids,
    format_runtime_version,
    processes_on_device,
    render_json,
    render_table,
    render_topology,
    truncate_command,
)

GOLDEN = Path(__file__).parent / "golden" / "neuron_ls"
UPDATE = os.environ.get("NRT_LAB_UPDATE_GOLDEN") == "1"
INSTANCE_ID = "i-0abc1234def567890"

LONG_COMMAND = (
    "python3 /home/ubuntu/neuronx-distributed/examples/training/llama/tp_zero1_llama_hf_pretrain.py "
    "--model_path /home/ubuntu/llama3-8B/config.json --tensor_parallel_size 8 --seq_len 4096 "
    "--max_steps 10000 --output_dir /fsx/checkpoints/llama3-8B"
)
SHORT_COMMAND = "python3 serve.py --port 8000"


def scenario_owners(spec: InstanceSpec, *, with_monitor: bool = False) -> list[OwnerRecord]:
    """Two runtime processes: one holds device 0 and the first core of device 1, the other the rest of 1."""
    d0, d1 = spec.cores_of_device(0), spec.cores_of_device(1)
    owners = [
        OwnerRecord(pid=23518, command=LONG_COMMAND, runtime_version="2.34.10.0",
                    cores=(*d0, d1[0]), tag="train", lnc=spec.lnc),
        OwnerRecord(pid=23531, command=SHORT_COMMAND, runtime_version="2.34.10.0",
                    cores=tuple(d1[1:]), tag="serve", lnc=spec.lnc),
    ]  # fmt: skip
    if with_monitor:
        owners.append(OwnerRecord(pid=23764, command="neuron-monitor", runtime_version="NA", cores=()))
    return owners


GOLDEN_INSTANCES = [
    ("inf1.6xlarge", None),
    ("inf2.48xlarge", None),
    ("trn1.32xlarge", None),
    ("trn2.48xlarge", 2),
    ("trn2.48xlarge", 1),
]

Form = Callable[[InstanceSpec], str]
FORMS: dict[str, tuple[str, Form]] = {
    # form -> (file suffix, renderer)
    "plain": ("txt", lambda s: render_table(s, INSTANCE_ID, [])),
    "plain-procs": ("txt", lambda s: render_table(s, INSTANCE_ID, scenario_owners(s))),
    "wide": ("txt", lambda s: render_table(s, INSTANCE_ID, scenario_owners(s), wide=True)),
    "all": (
        "txt",
        lambda s: render_table(s, INSTANCE_ID, scenario_owners(s, with_monitor=True), all_processes=True),
    ),
    "topology": ("txt", lambda s: render_topology(s, INSTANCE_ID, scenario_owners(s))),
    "json": ("json", lambda s: render_json(s, scenario_owners(s))),
}

CASES = [(name, lnc, form) for name, lnc in GOLDEN_INSTANCES for form in FORMS]


def golden_path(name: str, lnc: int | None, form: str) -> Path:
    stem = name if lnc is None else f"{name}-lnc{lnc}"
    suffix = FORMS[form][0]
    return GOLDEN / (f"{stem}.{suffix}" if form == suffix else f"{stem}.{form}.{suffix}")


@pytest.mark.parametrize(("name", "lnc", "form"), CASES, ids=[golden_path(*c).name for c in CASES])
def test_golden(name: str, lnc: int | None, form: str) -> None:
    rendered = FORMS[form][1](get_instance(name, lnc))
    path = golden_path(name, lnc, form)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with NRT_LAB_UPDATE_GOLDEN=1 and review it"
    assert rendered == path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------- Ray


def ray_num_neuron_cores(stdout: str) -> int:
    """The parsing half of Ray's NeuronAcceleratorManager.get_current_node_num_accelerators.

    Copied from ray-project/ray ``python/ray/_private/accelerators/neuron.py`` (Apache-2.0), which runs
    ``/opt/aws/neuron/bin/neuron-ls --json-output`` and sums ``nc_count`` over the devices.
    """
    nc_count: int = 0
    neuron_devices = json.loads(stdout)
    for neuron_device in neuron_devices:
        nc_count += neuron_device.get("nc_count", 0)
    return nc_count


# Ray's AWS_NEURON_INSTANCE_MAP (same file): NeuronCores per instance type, for the instances it knows.
RAY_INSTANCE_MAP = {
    "trn1.2xlarge": 2,
    "trn1.32xlarge": 32,
    "trn1n.32xlarge": 32,
    "inf2.xlarge": 2,
    "inf2.8xlarge": 2,
    "inf2.24xlarge": 12,
    "inf2.48xlarge": 24,
}


def _variants() -> list[tuple[str, int]]:
    return [(n, lnc) for n in instance_names() for lnc in ((1, 2) if n.startswith("trn2") else (1,))]


@pytest.mark.parametrize(("name", "lnc"), _variants())
def test_ray_detects_every_core(name: str, lnc: int) -> None:
    spec = get_instance(name, lnc)
    idle = render_json(spec, [])
    assert ray_num_neuron_cores(idle) == spec.total_cores
    assert ray_num_neuron_cores(render_json(spec, [], instance_id=INSTANCE_ID)) == spec.total_cores
    if name in RAY_INSTANCE_MAP:
        assert ray_num_neuron_cores(idle) == RAY_INSTANCE_MAP[name]


def test_json_keys_and_types() -> None:
    spec = get_instance("trn2.48xlarge", 2)
    devices = json.loads(render_json(spec, scenario_owners(spec)))
    assert isinstance(devices, list) and len(devices) == 16
    assert list(devices[0]) == [
        "neuron_device", "bdf", "cpu_affinity", "numa_node", "connected_to", "nc_count",
        "logical_neuroncore_config", "memory_size", "neuroncore_ids", "neuron_processes",
    ]  # fmt: skip
    first = devices[0]
    assert first["numa_node"] == "1" and first["bdf"] == "0000:cc:00.0"
    assert first["connected_to"] == [12, 3, 4, 1]
    assert first["memory_size"] == 103079215104 and first["logical_neuroncore_config"] == 2
    assert first["neuroncore_ids"] == [0, 1, 2, 3]
    assert first["neuron_processes"] == [
        {"pid": 23518, "command": LONG_COMMAND[:37] + "...", "neuron_runtime_version": "2.34.10"}
    ]
    assert [p["pid"] for p in devices[1]["neuron_processes"]] == [23518, 23531]
    assert devices[2]["neuron_processes"] == []


def test_json_with_instance_id_puts_instance_keys_first() -> None:
    spec = get_instance("trn1.2xlarge")
    (device,) = json.loads(render_json(spec, [], instance_id=INSTANCE_ID))
    assert list(device)[:3] == ["instance_type", "instance_id", "neuron_device"]
    assert (device["instance_type"], device["instance_id"]) == ("trn1.2xlarge", INSTANCE_ID)
    assert device["connected_to"] == [] and device["numa_node"] == "-1"


def test_json_without_processes_is_valid_and_lists_non_runtime_only_with_all() -> None:
    spec = get_instance("inf1.xlarge")
    monitor = [OwnerRecord(pid=7, command="neuron-monitor", runtime_version="NA", cores=())]
    assert json.loads(render_json(spec, monitor))[0]["neuron_processes"] == []
    shown = json.loads(render_json(spec, monitor, all_processes=True))[0]["neuron_processes"]
    assert shown == [{"pid": 7, "command": "neuron-monitor", "neuron_runtime_version": "NA"}]


# ----------------------------------------------------------------------------------------- units


def test_truncate_command() -> None:
    assert truncate_command("a" * 40) == "a" * 40
    assert truncate_command("a" * 41) == "a" * 37 + "..."
    assert len(truncate_command(LONG_COMMAND, 80)) == 80
    assert truncate_command("") == ""


@pytest.mark.parametrize(
    ("version", "shown"),
    [("2.34.10.0", "2.34.10"), ("2.0.0", "2.0.0"), ("NA", "NA"), ("2.27.23.0", "2.27.23")],
)
def test_runtime_version(version: str, shown: str) -> None:
    assert format_runtime_version(version) == shown


def test_core_ids() -> None:
    assert format_core_ids(get_instance("trn2.48xlarge", 1).devices[2]) == "16-23"
    assert format_core_ids(get_instance("trn1.32xlarge").devices[15]) == "30-31"


def test_processes_on_device_filters_and_sorts() -> None:
    spec = get_instance("trn1.32xlarge")
    owners = [
        OwnerRecord(pid=30, command="b", runtime_version="2.34.10.0", cores=(2, 3)),
        OwnerRecord(pid=20, command="a", runtime_version="2.34.10.0", cores=(0, 1, 2)),
        OwnerRecord(pid=10, command="neuron-ls -a", runtime_version="NA", cores=()),
        OwnerRecord(pid=40, command="c", runtime_version="2.34.10.0", cores=(30, 31)),
    ]
    assert [p.pid for p in processes_on_device(spec.devices[1], owners)] == [20, 30]
    assert [p.pid for p in processes_on_device(spec.devices[1], owners, all_processes=True)] == [10, 20, 30]
    assert [p.pid for p in processes_on_device(spec.devices[5], owners, all_processes=True)] == [10]
    assert [p.pid for p in processes_on_device(spec.devices[15], owners)] == [40]


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in ("+", "|")]


@pytest.mark.parametrize(("name", "lnc"), _variants())
@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True), (True, True)])
def test_tables_are_rectangular(name: str, lnc: int, flags: tuple[bool, bool]) -> None:
    spec = get_instance(name, lnc)
    owners: Sequence[OwnerRecord] = scenario_owners(spec, with_monitor=True) if spec.device_count > 1 else []
    text = render_table(spec, INSTANCE_ID, owners, wide=flags[0], all_processes=flags[1])
    lines = _table_lines(text)
    assert len({len(line) for line in lines}) == 1
    assert text.endswith("\n") and text.startswith(f"instance-type: {name}\ninstance-id: {INSTANCE_ID}\n")
    assert ("logical-neuroncore-config:" in text) == name.startswith("trn2")
    assert ("CONNECTED" in text) == (spec.device_count > 1)
    topo = render_topology(spec, INSTANCE_ID, owners)
    assert "Neuron Device Topology" in topo and "PID" not in topo
    assert len({len(line) for line in _table_lines(topo)}) == 1


def test_single_device_default_view_matches_real_trn1_2xlarge() -> None:
    """Real trn1.2xlarge output (public blog post), idle and with one runtime process."""
    spec = get_instance("trn1.2xlarge")
    assert render_table(spec, "i-xxxxxxxxxxxxx", []) == (
        "instance-type: trn1.2xlarge\n"
        "instance-id: i-xxxxxxxxxxxxx\n"
        "+--------+--------+----------+--------+--------------+----------+------+\n"
        "| NEURON | NEURON |  NEURON  | NEURON |     PCI      |   CPU    | NUMA |\n"
        "| DEVICE | CORES  | CORE IDS | MEMORY |     BDF      | AFFINITY | NODE |\n"
        "+--------+--------+----------+--------+--------------+----------+------+\n"
        "| 0      | 2      | 0-1      | 32 GB  | 0000:00:1e.0 | 0-7      | -1   |\n"
        "+--------+--------+----------+--------+--------------+----------+------+\n"
    )
    proc = OwnerRecord(
        37021, "/opt/conda/bin/python -c from multiprocessing.spawn import spawn_main", "2.27.23.0", (0, 1)
    )
    assert _table_lines(render_table(spec, "i-0abc1234def56789", [proc]))[1:] == [
        "| NEURON | NEURON |  NEURON  | NEURON |     PCI      |  PID  |   CPU    | NUMA |"
        "                 COMMAND                  | RUNTIME |",
        "| DEVICE | CORES  | CORE IDS | MEMORY |     BDF      |       | AFFINITY | NODE |"
        "                                          | VERSION |",
        "+--------+--------+----------+--------+--------------+-------+----------+------+"
        "------------------------------------------+---------+",
        "| 0      | 2      | 0-1      | 32 GB  | 0000:00:1e.0 | 37021 | 0-7      | -1   |"
        " /opt/conda/bin/python -c from multipr... | 2.27.23 |",
        "+--------+--------+----------+--------+--------------+-------+----------+------+"
        "------------------------------------------+---------+",
    ]


def test_command_column_dropped_when_no_command_is_known() -> None:
    """As in a real trn2.48xlarge report where the runtime's command line was not readable."""
    spec = get_instance("trn2.48xlarge")
    owners = [
        OwnerRecord(1966680, "", "2.34.10.0", (0, 1)),
        OwnerRecord(1966681, "", "2.34.10.0", (2, 3)),
    ]
    text = render_table(spec, INSTANCE_ID, owners)
    assert "COMMAND" not in text
    assert (
        "| 0      | 4      | 0-3      | 96 GB  | 12, 3, 4, 1   | 0000:cc:00.0 | 1966680 | 48-95,144-191 | 1    | 2.34.10 |"
        in text
    )
    assert (
        "|        |        |          |        |               |              | 1966681 |               |      | 2.34.10 |"
        in text
    )


def test_no_group_separators_when_each_device_has_one_process() -> None:
    spec = get_instance("trn1.32xlarge")
    owners = [OwnerRecord(268911, "neuron-bench exec --run-as-cc-neff", "2.0.0", tuple(range(32)))]
    lines = _table_lines(render_table(spec, INSTANCE_ID, owners, wide=True))
    assert len(lines) == 4 + 16 + 1  # border, 2 header lines, border, 16 rows, border


def test_idle_devices_show_na() -> None:
    spec = get_instance("inf1.6xlarge")
    text = render_table(spec, INSTANCE_ID, scenario_owners(spec), all_processes=True)
    assert "| 3      | 4      | 8 GB   | 2         | 00:1f.0 | NA    | NA " in text
