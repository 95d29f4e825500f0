"""Runtime 2.x beside a running Runtime 1.x daemon (docs/legacy.md): init's WARNING and busy cores, the framework
check that finds the daemon's NCGs, the driver refusing install/reload/uninstall, neuron-ls and the monitor naming
the daemon, doctor's rules, and the MXNet 1.5.1 case."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest
from legacy_fake import FakeDaemon
from legacy_helpers import short_root, start_daemon, write_config

import nrt_lab
from conftest import busy_message, parse_log_lines
from nrt_lab.driver import DaemonRunningError, Machine
from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.legacy.client import channel_target, daemon_ncg_count
from nrt_lab.legacy.coexist import DaemonOccupiedError, check_no_daemon_ncgs
from nrt_lab.legacy.proto import nrt_v1_pb2 as pb
from nrt_lab.legacy.proto import nrt_v1_pb2_grpc as pb_grpc
from nrt_lab.monitor import Monitor, diagnose
from nrt_lab.neff import GraphBuilder
from nrt_lab.nrt import Framework, nrt_init
from nrt_lab.runtime import get_runtime
from nrt_lab.tools import cli
from nrt_lab.tools.neuron_ls import main as neuron_ls

WARNING = ("Neuron Runtime 1.x (neuron-rtd, pid {pid}, {address}) is running: running Neuron Runtime 2.x beside it "
           "is undefined; stop it with 'sudo systemctl stop neuron-rtd'")


def _instance_config(machine: Machine, name: str, devices: list[int]) -> None:
    directory = machine.root / "opt" / "aws" / "neuron" / "config"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"nrtd{name}.json").write_text(json.dumps(
        {"name": f"nrtd{name}", "server_port": f"unix:/run/neuron.sock{name}", "devices": devices}), encoding="utf-8")


def test_init_beside_a_daemon_warns_and_sees_its_devices_busy(machine: Machine, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    _instance_config(machine, "0", [0])  # the daemon holds device 0 (nc0-nc1 of trn1.32xlarge)
    with FakeDaemon(machine.root, tmp_path, instance="0") as daemon:
        env = {"NRT_LAB_ROOT": str(machine.root), "NEURON_RT_LOG_LEVEL": "WARNING", "NEURON_RT_VISIBLE_CORES": "0-1"}
        with pytest.raises(NrtError) as exc:
            nrt_lab.init(env=env)
        assert exc.value.status == NrtStatus.FAILURE
        lines = parse_log_lines(capsys.readouterr().err)
        assert [(ln.level, ln.message) for ln in lines] == [
            ("WARN", WARNING.format(pid=daemon.pid, address="unix:/run/neuron.sock0")),
            ("ERROR", busy_message("nc0-nc1", 30)),
        ]
        rt = nrt_lab.init(env={**env, "NEURON_RT_VISIBLE_CORES": "2-3"})
        try:
            assert rt.cores == (2, 3)  # other devices work, with the same WARNING
            assert "is running: running Neuron Runtime 2.x beside it is undefined" in capsys.readouterr().err
            findings = {f.id: f for f in diagnose(Monitor().sample(runtimes=False), {}, frameworks={})}
            assert findings["rtd"].severity == "warning" and "nc0-nc1 are busy" in findings["rtd"].detail
            assert "nrt-lab systemctl stop neuron-rtd@0" in findings["rtd"].remedy
            assert findings["rtd:beside"].detail.startswith(f"2.x: process pid {os.getpid()} ")
        finally:
            rt.close()
    nrt_lab.init(env=env).close()
    assert "neuron-rtd" not in capsys.readouterr().err  # stopped: no warning, the cores are free again


def test_driver_changes_are_refused_while_the_daemon_runs(machine: Machine, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with FakeDaemon(machine.root, tmp_path) as daemon:
        for args in (["driver", "install", "--version", "2.25.0.0"], ["driver", "reload"], ["driver", "uninstall"],
                     ["pkg", "install", "aws-neuronx-dkms"]):
            assert cli.main(args) == 1
            err = capsys.readouterr().err
            assert "the Neuron Runtime 1.x daemon is running (pid " + str(daemon.pid) in err
            assert ("Stop it (sudo systemctl stop neuron-rtd; here: nrt-lab systemctl stop neuron-rtd), remove "
                    "aws-neuron-runtime (nrt-lab pkg remove aws-neuron-runtime), then install the driver again "
                    "(nrt-lab driver install)") in err
        with pytest.raises(DaemonRunningError):
            machine.install_driver()
        driver = machine.driver()
        assert driver is not None and str(driver.installed) == "2.24.7.0"
    assert cli.main(["driver", "install", "--version", "2.25.0.0"]) == 0


def test_neuron_ls_and_the_monitor_name_the_daemon(machine: Machine, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (machine.root / "rtd" / "neuron-rtd.pid").write_text("1\n", encoding="utf-8")  # the old pid files mean nothing
    assert not Monitor().sample(runtimes=False).daemon.running
    with FakeDaemon(machine.root, tmp_path) as daemon:
        assert neuron_ls(["--json-output"]) == 0
        devices = json.loads(capsys.readouterr().out)
        assert all([p["pid"] for p in d["neuron_processes"]] == [daemon.pid] for d in devices)
        assert neuron_ls([]) == 0
        assert f"{daemon.pid}" in capsys.readouterr().out
        snap = Monitor().sample(runtimes=False)
        assert snap.daemon.running and snap.daemon.pid == daemon.pid
        assert snap.daemon.address == "unix:/run/neuron.sock"
        assert snap.daemon.text == f"running (pid {daemon.pid}, unix:/run/neuron.sock, 32 NeuronCores)"
        (owner,) = snap.owners
        assert owner.is_daemon and owner.command.startswith("neuron-rtd")
    snap = Monitor().sample(runtimes=False)
    assert not snap.daemon.running and "rtd" not in {f.id for f in diagnose(snap, {}, frameworks={})}


def test_mxnet_1_5_is_refused_on_runtime_2(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    findings = {f.id: f for f in diagnose(Monitor().sample(runtimes=False), {},
                                          frameworks={"mxnet-neuron": "1.5.1.1.10.11.0"})}
    finding = findings["framework:mxnet15"]
    assert finding.severity == "error"
    assert "does not support Neuron Runtime 2.x (libnrt.so)" in finding.detail
    assert "Neuron MXNet 1.8" in finding.remedy
    assert "framework:mxnet15" not in {f.id for f in diagnose(Monitor().sample(runtimes=False), {},
                                                              frameworks={"mxnet-neuron": "1.8.0.2.2.43.0"})}
    assert nrt_init(Framework.MXNET, "1.5.1", "") == NrtStatus.FAILURE
    assert "Neuron MXNet 1.5.1 (MXNet 1.5.1) does not support Neuron Runtime 2.x" in capsys.readouterr().err
    assert get_runtime() is None
    assert nrt_init(Framework.MXNET, "1.8.0", "") == NrtStatus.SUCCESS
    nrt_lab.close()


def test_a_framework_finds_the_real_daemons_ncgs_and_refuses() -> None:
    for root in short_root():
        write_config(root, "nrtd0.json", {"name": "nrtd0", "server_port": "unix:/run/neuron.sock0", "devices": [0]})
        env = {"NRT_LAB_ROOT": str(root), "NEURON_RTD_ADDRESS": "unix:/run/neuron.sock0"}
        assert daemon_ncg_count("unix:/run/neuron.sock0", root) is None  # nothing answers: nothing to refuse
        check_no_daemon_ncgs(env=env)
        daemon = start_daemon(root, instance="0")
        try:
            assert daemon_ncg_count("unix:/run/neuron.sock0", root) == 0
            channel = grpc.insecure_channel(channel_target("unix:/run/neuron.sock0", root))
            stub = pb_grpc.nmgr_v1Stub(channel)  # type: ignore[no-untyped-call]
            for _ in range(2):
                assert stub.create_eg(pb.create_eg_request(nc_count=1)).status.code == 0
            channel.close()
            with pytest.raises(DaemonOccupiedError) as exc:
                check_no_daemon_ncgs(env=env)
            assert str(exc.value) == ("Detected occupied neuron-rtd (2) NeuronCore groups. Please stop it by "
                                      "'sudo systemctl stop neuron-rtd'")
        finally:
            daemon.stop()


def test_core_map_labels_the_daemons_cores(machine: Machine, tmp_path: Path) -> None:
    from nrt_lab.widgets import CoreMap

    _instance_config(machine, "1", [1])
    with FakeDaemon(machine.root, tmp_path, instance="1") as daemon:
        core_map = CoreMap(autostart=False)
        try:
            (owner,) = core_map.owners()
            assert owner["pid"] == daemon.pid and owner["tag"] == "neuron-rtd" and owner["cmd"].startswith("neuron-rtd")
            assert [c for c, pid in core_map.core_owners().items() if pid == daemon.pid] == [2, 3]
        finally:
            core_map.close()


def test_doctor_checks_neff_versions_against_both_runtimes(machine: Machine, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    paths = {}
    for name, version in (("old", (1, 1)), ("new", (2, 0)), ("future", (3, 0))):
        g = GraphBuilder(name=name)
        g.output("y", g.op("relu", [g.input("x", "float32", (2, 2))]))
        paths[name] = tmp_path / f"{name}.neff"
        paths[name].write_bytes(g.build(neff_version=version))
    (tmp_path / "junk.neff").write_bytes(b"not a neff")
    os.mkfifo(tmp_path / "pipe.neff")
    args = [a for p in [*paths.values(), tmp_path / "junk.neff", tmp_path / "pipe.neff", tmp_path / "nope.neff"]
            for a in ("--neff", str(p))]
    assert cli.main(["doctor", "--json", *args]) == 1
    found = {(f["id"], f["severity"], f["title"].split(" ")[0]) for f in json.loads(capsys.readouterr().out)["findings"]}
    assert {("neff:both", "info", str(paths["old"])), ("neff:rtd", "info", str(paths["new"])),
            ("neff:version", "error", str(paths["future"])), ("neff:invalid", "error", str(tmp_path / "junk.neff")),
            ("neff:unreadable", "error", str(tmp_path / "pipe.neff")),
            ("neff:unreadable", "error", str(tmp_path / "nope.neff"))} <= found
    with FakeDaemon(machine.root, tmp_path):
        assert cli.main(["doctor", "--neff", str(paths["new"])]) == 0
        out = capsys.readouterr().out
        assert f"WARNING: {paths['new']} is NEFF 2.0: Runtime 2.x only (a neuron-rtd is running)" in out
        assert "load fails with 10: NEFF version mismatch supported: 1.1 received: 2.0" in out
