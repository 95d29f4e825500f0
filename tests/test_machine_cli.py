"""``nrt-lab machine|driver`` (docs/architecture.md (The emulated machine), docs/behaviour.md §5): provisioning, driver package,
refusals while a real process owns cores, and unusable state (corrupted files, unsafe state roots)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nrt_lab
from conftest import (
    OwnerFactory,
    OwnerProcess,
    assert_only_syslog_grew,
    assert_single_log_line,
    run_cli,
    snapshot_files,
)
from nrt_lab import NrtError, NrtStatus
from nrt_lab.driver import DEFAULT_DRIVER_VERSION, Machine, open_machine
from nrt_lab.hardware import instance_names
from nrt_lab.tools.cli import main

DRIVER_MISSING = "Unable to determine Neuron Driver version. Please check aws-neuron-dkms package is installed."
INSTANCE_ID = r"i-0[0-9a-f]{16}"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``nrt-lab ARGS`` in-process; returns (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------------------ machine


def test_machine_create_show_destroy(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "machine", "create", "--instance", "inf2.48xlarge")
    assert (rc, err) == (0, "")
    match = re.fullmatch(rf"created inf2\.48xlarge \(lnc 1\) with 24 NeuronCores on 12 devices, "
                         rf"instance-id ({INSTANCE_ID})\n", out)
    assert match, out
    instance_id = match[1]
    assert machine.state().instance_id == instance_id
    assert machine.instance().total_cores == 24

    rc, out, err = cli(capsys, "machine", "show")
    assert (rc, err) == (0, "")
    assert out == (
        "instance-type: inf2.48xlarge\n"
        f"instance-id: {instance_id}\n"
        "logical-neuroncore-config: 1\n"
        f"state root: {machine_root}\n"
        "devices: 12 x inferentia2 (2 NeuronCore-v2 each, 32 GiB)\n"
        "neuroncores: 24 (0 owned by 0 processes)\n"
        f"driver: aws-neuronx-dkms {DEFAULT_DRIVER_VERSION}, loaded {DEFAULT_DRIVER_VERSION}\n"
    )

    rc, out, err = cli(capsys, "machine", "show", "--json")
    assert (rc, err) == (0, "")
    shown = json.loads(out)
    assert {k: v for k, v in shown.items() if k != "driver"} == {
        "root": str(machine_root),
        "instance_type": "inf2.48xlarge",
        "instance_id": instance_id,
        "logical_neuroncore_config": 1,
        "neuron_device_count": 12,
        "neuroncore_per_device_count": 2,
        "neuroncore_count": 24,
        "neuroncore_version": "v2",
        "device_memory_bytes": 32 * 2**30,
        "owners": [],
    }
    assert shown["driver"]["version"] == shown["driver"]["loaded_version"] == str(DEFAULT_DRIVER_VERSION)

    with nrt_lab.init() as runtime:
        assert runtime.cores == tuple(range(24))

    rc, out, err = cli(capsys, "machine", "destroy")
    assert (rc, out, err) == (0, f"destroyed the machine at {machine_root}\n", "")
    assert not (machine_root / "machine.json").exists() and not (machine_root / "driver.json").exists()
    # The next use provisions the default instance again, with a new identity and a driver.
    rc, out, _ = cli(capsys, "machine", "show", "--json")
    again = json.loads(out)
    assert (rc, again["instance_type"], again["neuroncore_count"]) == (0, "trn1.32xlarge", 32)
    assert again["instance_id"] != instance_id
    assert again["driver"]["loaded_version"] == str(DEFAULT_DRIVER_VERSION)


def test_machine_list_types(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "machine", "list-types")
    assert (rc, err) == (0, "")
    names = out.splitlines()
    assert names == instance_names()
    assert {"inf1.6xlarge", "inf2.48xlarge", "trn1.32xlarge", "trn2.48xlarge"} <= set(names)


def test_machine_create_unknown_instance(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot_files(machine_root)
    rc, out, err = cli(capsys, "machine", "create", "--instance", "p5.48xlarge")
    assert (rc, out) == (2, "")
    assert err == ("nrt-lab: error: unknown instance type 'p5.48xlarge'; accepted instance types: "
                   + ", ".join(instance_names()) + "\n")
    assert snapshot_files(machine_root) == before


@pytest.mark.parametrize(("instance", "lnc", "accepted"), [("inf2.48xlarge", "2", "accepted: 1"),
                                                          ("trn1.32xlarge", "2", "accepted: 1"),
                                                          ("trn2.48xlarge", "3", "accepted: 1, 2")])
def test_machine_create_bad_lnc(machine_root: Path, capsys: pytest.CaptureFixture[str], instance: str, lnc: str,
                                accepted: str) -> None:
    before = snapshot_files(machine_root)
    rc, out, err = cli(capsys, "machine", "create", "--instance", instance, "--lnc", lnc)
    assert (rc, out) == (2, "")
    assert err.startswith(f"nrt-lab: error: logical NeuronCore config {lnc} is not accepted for {instance}")
    assert err.rstrip("\n").endswith(accepted)
    assert snapshot_files(machine_root) == before


def test_machine_create_trn2_lnc(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "machine", "create", "--instance", "trn2.48xlarge", "--lnc", "1")
    assert rc == 0 and out.startswith("created trn2.48xlarge (lnc 1) with 128 NeuronCores on 16 devices")
    assert nrt_lab.total_nc_count() == 128
    rc, out, _ = cli(capsys, "machine", "create", "--instance", "trn2.48xlarge")
    assert rc == 0 and out.startswith("created trn2.48xlarge (lnc 2) with 64 NeuronCores on 16 devices")
    assert nrt_lab.total_nc_count() == 64


def test_bad_arguments_exit_2(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["machine"], ["machine", "create"], ["machine", "create", "--instance", "x", "--lnc", "two"],
                 ["driver", "frobnicate"]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2, args
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------ driver


def test_driver_commands(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "driver", "status")
    assert (rc, err) == (0, "")
    assert out == (
        "package: aws-neuronx-dkms\n"
        f"installed: {DEFAULT_DRIVER_VERSION}\n"
        f"loaded: {DEFAULT_DRIVER_VERSION}\n"
        f"runtime: libnrt {nrt_lab.RUNTIME_VERSION} (needs driver >= 2.1.5.0): OK\n"
        "used by: 0\n"
    )
    rc, out, _ = cli(capsys, "driver", "install", "--version", "2.25")
    assert (rc, out) == (0, "installed aws-neuronx-dkms 2.25.0.0\n")
    status = json.loads(cli(capsys, "driver", "status", "--json")[1])
    assert status == {
        "package": "aws-neuronx-dkms",
        "installed_version": "2.25.0.0",
        "loaded_version": "2.25.0.0",
        "reload_pending": False,
        "runtime_version": nrt_lab.RUNTIME_VERSION,
        "minimum_driver_version": "2.1.5.0",
        "runtime_can_start": True,
        "runtime_message": None,
        "used_by": [],
    }
    assert cli(capsys, "driver", "reload") == (0, "reloaded the neuron module: version 2.25.0.0\n", "")
    assert cli(capsys, "driver", "uninstall") == (0, "removed aws-neuronx-dkms\n", "")
    rc, out, _ = cli(capsys, "driver", "status")
    assert rc == 0
    assert out == (
        "package: aws-neuronx-dkms\n"
        "installed: no\n"
        f"runtime: libnrt {nrt_lab.RUNTIME_VERSION} (needs driver >= 2.1.5.0): FAILS: {DRIVER_MISSING}\n"
        "used by: 0\n"
    )
    status = json.loads(cli(capsys, "driver", "status", "--json")[1])
    assert (status["installed_version"], status["runtime_can_start"], status["runtime_message"]) == (
        None, False, DRIVER_MISSING)
    rc, out, err = cli(capsys, "driver", "reload")
    assert (rc, out) == (1, "")
    assert err == ("nrt-lab: error: cannot reload the driver: aws-neuronx-dkms is not installed "
                   "(nrt-lab driver install)\n")
    assert "driver: aws-neuronx-dkms not installed\n" in cli(capsys, "machine", "show")[1]
    rc, out, _ = cli(capsys, "driver", "install", "--version", "1.9")
    assert rc == 0
    status = json.loads(cli(capsys, "driver", "status", "--json")[1])
    assert (status["loaded_version"], status["runtime_can_start"]) == ("1.9.0.0", False)
    assert status["runtime_message"].startswith("This runtime requires Neuron Driver version 2.0 or greater.")


@pytest.mark.parametrize("version", ["two", "2", "2.x", "-1.0", "2.24.7.0.1", ""])
def test_driver_install_bad_version(machine_root: Path, capsys: pytest.CaptureFixture[str], version: str) -> None:
    before = snapshot_files(machine_root)
    rc, out, err = cli(capsys, "driver", "install", "--version", version)
    assert (rc, out) == (2, "")
    assert err.startswith(f"nrt-lab: error: invalid driver version {version!r}; accepted: MAJOR.MINOR")
    assert snapshot_files(machine_root) == before


# ------------------------------------------------------------------------------------------------ in use


def _assert_refused(rc: int, out: str, err: str, owner: OwnerProcess, record_command: str, action: str) -> None:
    assert (rc, out) == (1, ""), err
    assert err.startswith(f"nrt-lab: error: cannot {action}: module neuron is in use (Used by: 1): ")
    short = record_command if len(record_command) <= 60 else record_command[:57] + "..."
    assert f"pid {owner.pid} ({short}) holds nc0-nc3" in err
    assert "# nrt-lab-test-owner" in err  # the owner's command line, as ps prints it
    assert err.count("\n") == 1


def test_changes_refused_while_a_process_owns_cores(owner_process: OwnerFactory, machine: Machine,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    owner = owner_process({"NEURON_RT_VISIBLE_CORES": "0-3"})
    assert owner.cores == (0, 1, 2, 3)
    (record,) = machine.owners()

    rc, out, err = cli(capsys, "driver", "install", "--version", "2.26.0.0")
    assert (rc, err) == (0, "")
    assert out == ("installed aws-neuronx-dkms 2.26.0.0\n"
                   f"the loaded module is still {DEFAULT_DRIVER_VERSION}: NeuronCores are in use; "
                   "stop their owners, then run `nrt-lab driver reload`\n")
    status = json.loads(cli(capsys, "driver", "status", "--json")[1])
    assert (status["installed_version"], status["loaded_version"], status["reload_pending"]) == (
        "2.26.0.0", str(DEFAULT_DRIVER_VERSION), True)
    assert status["used_by"] == [{"pid": owner.pid, "command": record.command}]
    text = cli(capsys, "driver", "status")[1]
    assert "reload pending: the installed version takes effect at the next `nrt-lab driver reload`\n" in text
    assert f"used by: 1\n  pid {owner.pid} {record.command[:60]}\n" in text
    show = cli(capsys, "machine", "show")[1]
    assert "neuroncores: 32 (4 owned by 1 process)\n" in show
    assert f"  pid {owner.pid:<7} tag {str(owner.pid):<12} {'nc0-nc3':<14} {record.command[:60]}\n" in show
    assert json.loads(cli(capsys, "machine", "show", "--json")[1])["owners"] == [record.to_json()]

    before = snapshot_files(machine.root)
    for args, action in [
        (["driver", "reload"], "reload the driver"),
        (["driver", "uninstall"], "uninstall the driver"),
        (["machine", "create", "--instance", "inf2.48xlarge"], "create machine inf2.48xlarge"),
        (["machine", "destroy"], "destroy the machine"),
    ]:
        _assert_refused(*cli(capsys, *args), owner, record.command, action)
        assert snapshot_files(machine.root) == before, args
    # The same refusal from a real nrt-lab process.
    done = run_cli(["machine", "destroy"], machine.root)
    _assert_refused(done.returncode, done.stdout, done.stderr, owner, record.command, "destroy the machine")
    assert snapshot_files(machine.root) == before
    assert [o.pid for o in machine.owners()] == [owner.pid]

    assert owner.exit() == 0
    assert cli(capsys, "driver", "reload") == (0, "reloaded the neuron module: version 2.26.0.0\n", "")
    assert cli(capsys, "driver", "uninstall")[0] == 0
    assert cli(capsys, "machine", "create", "--instance", "inf2.48xlarge")[0] == 0
    assert cli(capsys, "machine", "destroy")[0] == 0


def test_sigkilled_owner_does_not_block_changes(owner_process: OwnerFactory, machine: Machine) -> None:
    owner = owner_process({"NEURON_RT_NUM_CORES": "2"})
    assert owner.cores == (0, 1)
    refused = run_cli(["driver", "uninstall"], machine.root)
    assert refused.returncode == 1 and f"pid {owner.pid} (" in refused.stderr
    owner.kill()
    done = run_cli(["machine", "create", "--instance", "inf1.6xlarge"], machine.root)
    assert done.returncode == 0, done.stderr
    assert list((machine.root / "procs").iterdir()) == []  # the dead owner's record was swept
    shown = run_cli(["machine", "show", "--json"], machine.root)
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["neuroncore_count"] == 16


def test_real_cli_process_round_trip(machine_root: Path) -> None:
    created = run_cli(["machine", "create", "--instance", "trn2.48xlarge", "--lnc", "1"], machine_root)
    assert (created.returncode, created.stderr) == (0, "")
    shown = json.loads(run_cli(["machine", "show", "--json"], machine_root).stdout)
    assert (shown["instance_type"], shown["logical_neuroncore_config"], shown["neuroncore_count"]) == (
        "trn2.48xlarge", 1, 128)
    unknown = run_cli(["machine", "create", "--instance", "trn9.huge"], machine_root)
    assert unknown.returncode == 2 and "accepted instance types: inf1.xlarge" in unknown.stderr
    status = run_cli(["driver", "status", "--json"], machine_root)
    assert json.loads(status.stdout)["runtime_can_start"] is True


# ------------------------------------------------------------------------------------------------ bad state


def _edit_machine(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data), encoding="utf-8")

    return apply


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _tamper_devices(data: dict[str, Any]) -> None:
    data["instance"]["devices"][0]["core_count"] = 3


def _make_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


MACHINE_CORRUPTIONS: list[tuple[str, Callable[[Path], None], str]] = [
    ("not-json", lambda p: p.write_text("this is not json", encoding="utf-8"), "invalid JSON"),
    ("truncated", _truncate, "invalid JSON"),
    ("empty", lambda p: p.write_bytes(b""), "invalid JSON"),
    ("not-utf8", lambda p: p.write_bytes(b"\xff\xfe{}"), "not UTF-8"),
    ("list", lambda p: p.write_text("[1, 2]", encoding="utf-8"), "expected a JSON object, found list"),
    ("lnc-type", _edit_machine(_set("lnc", "1")), "lnc is '1', expected 1 or 2"),
    ("name-type", _edit_machine(_set("instance_type", 5)), "instance_type is 5, expected a string"),
    ("created-type", _edit_machine(_set("created", "yesterday")), "expected a number"),
    ("instance-id", _edit_machine(_set("instance_id", "abc")), "instance_id is 'abc'"),
    ("unknown-instance", _edit_machine(_set("instance_type", "p5.48xlarge")),
     "unknown instance type 'p5.48xlarge'; accepted instance types: inf1.xlarge"),
    ("lnc-2-on-trn1", _edit_machine(_set("lnc", 2)), "accepted: 1"),
    ("schema-2", _edit_machine(_set("schema_version", 2)), "has schema_version 2; accepted: 1"),
    ("schema-missing", _edit_machine(lambda d: d.pop("schema_version")), "has schema_version None; accepted: 1"),
    ("devices", _edit_machine(_tamper_devices), "does not match the catalogue entry for trn1.32xlarge"),
    ("directory", _make_directory, "cannot be read"),
]


@pytest.mark.parametrize(("corrupt", "reason"), [c[1:] for c in MACHINE_CORRUPTIONS],
                         ids=[c[0] for c in MACHINE_CORRUPTIONS])
def test_corrupted_machine_file(machine_root: Path, capsys: pytest.CaptureFixture[str],
                                corrupt: Callable[[Path], None], reason: str) -> None:
    path = machine_root / "machine.json"
    corrupt(path)
    before = snapshot_files(machine_root)
    for args in (["machine", "show"], ["machine", "show", "--json"], ["driver", "status"],
                 ["driver", "install"], ["driver", "reload"]):
        rc, out, err = cli(capsys, *args)
        assert (rc, out) == (1, ""), args
        assert err.startswith(f"nrt-lab: error: machine file {path} "), err
        assert reason in err
        assert err.rstrip("\n").endswith("re-provision with: nrt-lab machine create --instance NAME"), err
        assert err.count("\n") == 1
    with pytest.raises(NrtError) as info:
        nrt_lab.init()
    assert info.value.status == NrtStatus.FAILURE
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "TDRV", "tdrv_init")
    assert str(path) in line.message and reason in line.message
    for call in (nrt_lab.total_nc_count, nrt_lab.visible_nc_count):
        with pytest.raises(NrtError) as info:
            call()
        assert info.value.status == NrtStatus.FAILURE and str(path) in info.value.message
    assert_only_syslog_grew(machine_root, before, "tdrv_init", str(path))  # errors reach syslog by default
    assert path.is_dir() or path.read_bytes() == before["machine.json"][0]
    # The remedy the message names works.
    if path.is_dir():
        path.rmdir()
    assert cli(capsys, "machine", "create", "--instance", "trn1.32xlarge")[0] == 0
    with nrt_lab.init() as runtime:
        assert len(runtime.cores) == 32


def test_corrupted_machine_file_in_a_real_cli_process(machine_root: Path) -> None:
    (machine_root / "machine.json").write_text('{"schema_version": 1', encoding="utf-8")
    before = snapshot_files(machine_root)
    done = run_cli(["machine", "show"], machine_root)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"nrt-lab: error: machine file {machine_root / 'machine.json'} is corrupted")
    assert "Traceback" not in done.stderr
    assert snapshot_files(machine_root) == before


DRIVER_CORRUPTIONS: list[tuple[str, str, str]] = [
    ("not-json", "{{{", "invalid JSON"),
    ("list", "[]", "expected a JSON object, found list"),
    ("old-package-name", json.dumps({"package": "aws-neuron-dkms", "version": "2.24.7.0",
                                     "loaded_version": "2.24.7.0", "installed_at": 1.0}),
     "package is 'aws-neuron-dkms', expected 'aws-neuronx-dkms'"),
    ("bad-version", json.dumps({"package": "aws-neuronx-dkms", "version": "two", "loaded_version": "2.24.7.0",
                                "installed_at": 1.0}), "invalid driver version 'two'"),
    ("loaded-type", json.dumps({"package": "aws-neuronx-dkms", "version": "2.24.7.0", "loaded_version": 3,
                                "installed_at": 1.0}), "invalid driver version 3"),
    ("installed-at", json.dumps({"package": "aws-neuronx-dkms", "version": "2.24.7.0",
                                 "loaded_version": "2.24.7.0", "installed_at": "now"}),
     "installed_at is 'now', expected a number"),
]


@pytest.mark.parametrize(("content", "reason"), [c[1:] for c in DRIVER_CORRUPTIONS],
                         ids=[c[0] for c in DRIVER_CORRUPTIONS])
def test_corrupted_driver_file(machine_root: Path, capsys: pytest.CaptureFixture[str], content: str,
                               reason: str) -> None:
    path = machine_root / "driver.json"
    path.write_text(content, encoding="utf-8")
    before = snapshot_files(machine_root)
    for args in (["driver", "status"], ["driver", "status", "--json"], ["driver", "reload"], ["machine", "show"]):
        rc, out, err = cli(capsys, *args)
        assert (rc, out) == (1, ""), args
        assert err.startswith(f"nrt-lab: error: driver file {path} "), err
        assert reason in err
        assert err.rstrip("\n").endswith("reinstall with: nrt-lab driver uninstall && nrt-lab driver install")
    with pytest.raises(NrtError) as info:
        nrt_lab.init()
    assert info.value.status == NrtStatus.FAILURE
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    assert str(path) in line.message and reason in line.message
    assert_only_syslog_grew(machine_root, before, "nrt_init", str(path))  # errors reach syslog by default
    # The remedy the message names works.
    assert cli(capsys, "driver", "uninstall")[0] == 0
    assert cli(capsys, "driver", "install")[0] == 0
    with nrt_lab.init() as runtime:
        assert len(runtime.cores) == 32


def _check_root_refused(root: Path, capsys: pytest.CaptureFixture[str], expected: str) -> None:
    """Every entry point refuses the state root with one message; nothing under it is changed."""
    target = root.resolve()
    before = snapshot_files(target)
    mode = target.stat().st_mode
    for args in (["machine", "show"], ["machine", "create", "--instance", "inf2.xlarge"], ["driver", "status"],
                 ["machine", "destroy"]):
        rc, out, err = cli(capsys, *args)
        assert (rc, out) == (1, ""), args
        assert err == f"nrt-lab: error: {expected}\n"
    with pytest.raises(NrtError) as info:
        nrt_lab.init()
    assert info.value.status == NrtStatus.FAILURE
    assert_single_log_line(capsys.readouterr().err, "ERROR", "TDRV", "tdrv_init", expected)
    with pytest.raises(nrt_lab.StateError, match=re.escape(expected)):
        open_machine()
    assert snapshot_files(target) == before
    assert target.stat().st_mode == mode


@pytest.mark.parametrize("mode", [0o777, 0o720, 0o702])
def test_state_root_with_unsafe_mode(machine_root: Path, capsys: pytest.CaptureFixture[str], mode: int) -> None:
    machine_root.chmod(mode)
    try:
        _check_root_refused(
            machine_root, capsys,
            f"state root {machine_root} has unsafe permissions {mode:04o} (writable by group or others); "
            f"accepted: 0700 (fix with: chmod 700 {machine_root})",
        )
    finally:
        machine_root.chmod(0o700)
    with nrt_lab.init() as runtime:
        assert len(runtime.cores) == 32


def test_state_root_symlink(machine_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "link-root"
    link.symlink_to(machine_root, target_is_directory=True)
    monkeypatch.setenv("NRT_LAB_ROOT", str(link))
    _check_root_refused(link, capsys, f"state root {link} is a symbolic link; accepted: a real directory owned "
                                      "by you with mode 0700")
    assert link.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")
def test_state_root_owned_by_someone_else(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.chown(machine_root, 65534, 65534)
    try:
        _check_root_refused(machine_root, capsys,
                            f"state root {machine_root} is owned by uid 65534, not by you (uid 0); "
                            "accepted: a directory owned by you with mode 0700")
    finally:
        os.chown(machine_root, 0, 0)


def test_state_root_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    for key in [k for k in os.environ if k.startswith("NEURON")]:
        monkeypatch.delenv(key)
    root = tmp_path / "state-file"
    root.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("NRT_LAB_ROOT", str(root))
    rc, out, err = cli(capsys, "machine", "show")
    assert (rc, out) == (1, "")
    assert err == (f"nrt-lab: error: state root {root} is not a directory; accepted: a directory owned by you "
                   "with mode 0700\n")
    with pytest.raises(NrtError):
        nrt_lab.init()
    assert root.read_text(encoding="utf-8") == "not a directory"


def test_fresh_state_root_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for key in [k for k in os.environ if k.startswith("NEURON")]:
        monkeypatch.delenv(key)
    root = tmp_path / "deep" / "nrt"
    monkeypatch.setenv("NRT_LAB_ROOT", str(root))
    rc, out, _ = cli(capsys, "machine", "show")
    assert rc == 0 and out.startswith("instance-type: trn1.32xlarge\n")
    assert root.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in root.iterdir()) == ["driver.json", "faults", "locks", "log", "machine.json",
                                                      "procs", "rtd"]
    shutil.rmtree(root)
