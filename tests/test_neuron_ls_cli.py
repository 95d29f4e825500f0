"""neuron-ls as a command over a live machine: real owner processes, device users, JSON for Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OwnerFactory, child_environment
from nrt_lab.tools.neuron_ls import main

DEVICE_USER = (
    "import sys, nrt_lab\n"
    "from nrt_lab.driver.locks import open_devices\n"
    "from nrt_lab.driver.owners import process_command_line\n"
    "handle = open_devices(nrt_lab.open_machine().root, process_command_line())\n"
    "print('open', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_json_is_valid_with_no_process_and_counts_every_core(machine_root: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-j"]) == 0
    devices = json.loads(capsys.readouterr().out)
    assert sum(d["nc_count"] for d in devices) == 32 and all(d["neuron_processes"] == [] for d in devices)


def test_runtime_owner_appears_on_its_devices_only(machine_root: Path, owner_process: OwnerFactory,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    owner = owner_process({"NEURON_RT_VISIBLE_CORES": "2-5"})
    assert owner.cores == (2, 3, 4, 5)
    assert main(["--json-output"]) == 0
    devices = json.loads(capsys.readouterr().out)
    users = {d["neuron_device"]: [p["pid"] for p in d["neuron_processes"]] for d in devices}
    assert users[1] == users[2] == [owner.proc.pid] and users[0] == users[3] == []
    assert {p["neuron_runtime_version"] for d in devices for p in d["neuron_processes"]} == {"2.34.10"}
    assert main(["-w"]) == 0
    wide = capsys.readouterr().out
    assert str(owner.proc.pid) in wide and wide.startswith("instance-type: trn1.32xlarge\ninstance-id: i-")


def test_show_all_lists_tools_that_only_opened_the_devices(machine_root: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    tool = subprocess.Popen([sys.executable, "-c", DEVICE_USER], env=child_environment(machine_root),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert tool.stdout is not None and tool.stdout.readline().strip() == "open"
        assert main(["-j"]) == 0  # without -a: only runtimes
        assert all(d["neuron_processes"] == [] for d in json.loads(capsys.readouterr().out))
        assert main(["-a", "-j"]) == 0
        devices = json.loads(capsys.readouterr().out)
        assert all([p["pid"] for p in d["neuron_processes"]] == [tool.pid] for d in devices)
        assert {p["neuron_runtime_version"] for d in devices for p in d["neuron_processes"]} == {"NA"}
    finally:
        assert tool.stdin is not None
        tool.stdin.close()
        tool.wait(timeout=15)
    assert main(["-a", "-j"]) == 0  # the tool exited: gone at once
    assert all(d["neuron_processes"] == [] for d in json.loads(capsys.readouterr().out))


def test_corrupted_machine_file_is_an_error_not_a_traceback(machine_root: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (machine_root / "machine.json").write_text("{not json", encoding="utf-8")
    assert main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neuron-ls: error: machine file") and "invalid JSON" in err
