"""``nrt-lab pkg install|remove|list``: the Neuron 1.x packages and the driver package, with versions, under the
state root; removing aws-neuron-runtime is refused while a neuron-rtd daemon runs (docs/legacy.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from legacy_fake import FakeDaemon

from nrt_lab.driver import DRIVER_PACKAGE, Machine
from nrt_lab.legacy import packages
from nrt_lab.legacy.paths import DEFAULT_CONFIG, real_to_root
from nrt_lab.tools import cli


def _pkg(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["pkg", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fresh_machine_lists_only_the_driver(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _pkg(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["PACKAGE", "VERSION", "STATUS", "DESCRIPTION"]
    assert lines[1].split()[:3] == [DRIVER_PACKAGE, "2.24.7.0", "installed"]
    assert [line.split()[0] for line in lines[2:]] == ["aws-neuron-runtime-base", "aws-neuron-runtime",
                                                       "aws-neuron-tools"]
    assert all(" - " in line and "not installed" in line for line in lines[2:])


def test_install_runtime_pulls_base_and_writes_the_conffile(machine: Machine,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _pkg(capsys, "install", "aws-neuron-runtime")
    assert code == 0
    assert out.splitlines()[:2] == ["installed aws-neuron-runtime-base 1.6.9.0 (needed by aws-neuron-runtime)",
                                    "installed aws-neuron-runtime 1.6.9.0"]
    assert "nrt-lab systemctl start neuron-rtd" in out
    config = real_to_root(machine.root, DEFAULT_CONFIG)
    assert json.loads(config.read_text(encoding="utf-8")) == packages.DEFAULT_DAEMON_CONFIG
    assert packages.installed_packages(machine.root) == {"aws-neuron-runtime-base": "1.6.9.0",
                                                         "aws-neuron-runtime": "1.6.9.0"}
    config.write_text('{"model_cache_count": 4}\n', encoding="utf-8")  # the user's edit survives a reinstall
    code, out, _ = _pkg(capsys, "install", "aws-neuron-runtime=1.5.0.0")
    assert code == 0 and "changed from 1.6.9.0 to aws-neuron-runtime 1.5.0.0" in out
    assert config.read_text(encoding="utf-8") == '{"model_cache_count": 4}\n'
    code, out, _ = _pkg(capsys, "list", "--json")
    rows = {r["package"]: r for r in json.loads(out)}
    assert rows["aws-neuron-runtime"]["version"] == "1.5.0.0" and rows["aws-neuron-tools"]["installed"] is False
    machine.destroy()  # a new instance has none of the old one's packages
    assert packages.installed_packages(machine.root) == {}


def test_remove_checks_dependencies_then_keeps_the_conffile(machine: Machine,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _pkg(capsys, "install", "aws-neuron-runtime")
    code, _, err = _pkg(capsys, "remove", "aws-neuron-runtime-base")
    assert code == 1
    assert "cannot remove aws-neuron-runtime-base: aws-neuron-runtime depends on it" in err
    code, out, _ = _pkg(capsys, "remove", "aws-neuron-runtime")
    assert code == 0 and "removed aws-neuron-runtime" in out and "is kept" in out
    assert real_to_root(machine.root, DEFAULT_CONFIG).exists()
    assert _pkg(capsys, "remove", "aws-neuron-runtime-base")[0] == 0
    code, _, err = _pkg(capsys, "remove", "aws-neuron-tools")
    assert code == 1 and "aws-neuron-tools is not installed" in err


def test_driver_packages_are_the_driver_of_nrt_lab_driver(machine: Machine,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _pkg(capsys, "install", "aws-neuron-dkms", "--version", "2.21.37.0")
    assert code == 0
    assert out.splitlines() == [f"aws-neuron-dkms is the Neuron 1.x name of {DRIVER_PACKAGE}; installing "
                                f"{DRIVER_PACKAGE}", f"installed {DRIVER_PACKAGE} 2.21.37.0"]
    driver = machine.driver()
    assert driver is not None and str(driver.installed) == "2.21.37.0"
    assert _pkg(capsys, "remove", DRIVER_PACKAGE)[0] == 0
    assert machine.driver() is None
    code, _, err = _pkg(capsys, "remove", "aws-neuron-dkms")
    assert code == 1 and f"{DRIVER_PACKAGE} is not installed" in err


@pytest.mark.parametrize(("args", "message"), [
    (["install", "aws-neuron-foo"], "unknown package 'aws-neuron-foo'; accepted: aws-neuron-runtime-base, "
                                    "aws-neuron-runtime, aws-neuron-tools, aws-neuronx-dkms, aws-neuron-dkms"),
    (["install", "aws-neuron-runtime=2.0.0"], "aws-neuron-runtime 2.0.0 does not exist: aws-neuron-runtime is "
                                              "Neuron Runtime 1.x"),
    (["install", "aws-neuron-tools", "--version", "1.x"], "invalid version '1.x' for aws-neuron-tools; accepted: "
                                                          "MAJOR.MINOR[.PATCH[.BUILD]]"),
    (["install", "aws-neuron-tools=1.0", "--version", "1.1"], "give the version once"),
    (["remove", "aws-neuron-tools=1.0"], "remove takes a package name without a version"),
])
def test_bad_requests_exit_2_with_one_clear_line(machine: Machine, capsys: pytest.CaptureFixture[str],
                                                 args: list[str], message: str) -> None:
    code, out, err = _pkg(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("nrt-lab pkg: error: ") and message in err and err.count("\n") == 1


def test_corrupted_package_database_is_a_clear_error(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    (machine.root / "packages.json").write_text('{"packages": {"aws-neuron-runtime": {"version": 7}}}',
                                                encoding="utf-8")
    code, _, err = _pkg(capsys, "list")
    assert code == 1
    assert "package database" in err and "is corrupted at 'aws-neuron-runtime'" in err
    assert "Traceback" not in err


def test_remove_runtime_is_refused_while_the_daemon_runs(machine: Machine, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _pkg(capsys, "install", "aws-neuron-runtime")
    with FakeDaemon(machine.root, tmp_path) as daemon:
        code, _, err = _pkg(capsys, "remove", "aws-neuron-runtime")
        assert code == 1
        assert err == (f"nrt-lab pkg: error: cannot remove aws-neuron-runtime: neuron-rtd is running (pid "
                       f"{daemon.pid}); stop it first: nrt-lab systemctl stop neuron-rtd (sudo systemctl stop "
                       "neuron-rtd on a real machine)\n")
        code, out, _ = _pkg(capsys, "list")
        assert f"[running: pid {daemon.pid} (1.6.9.0)]" in out
        # An upgrade with the daemon running: the package changes, the daemon runs the old version until restarted.
        code, out, _ = _pkg(capsys, "install", "aws-neuron-runtime=1.6.24.0")
        assert code == 0
        assert (f"neuron-rtd (pid {daemon.pid}) still runs 1.6.9.0 until it is restarted: nrt-lab systemctl "
                "restart neuron-rtd") in out
    assert _pkg(capsys, "remove", "aws-neuron-runtime")[0] == 0
