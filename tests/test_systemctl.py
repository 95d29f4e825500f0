"""``nrt-lab systemctl start|stop|restart|status neuron-rtd[@inst]``: systemctl-like status (golden files), the
package and driver conditions, and real daemon processes started and stopped (docs/legacy.md).

The process tests start ``neuron-rtd`` through PATH; here that is the stand-in tests/neuron-rtd-standin.py (same owner
record and pid-file contract as the real daemon), so these tests do not depend on the gRPC server."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import signal
import subprocess
from pathlib import Path

import pytest
from legacy_fake import fake_on_path
from legacy_helpers import short_root, write_config

from nrt_lab.driver import Machine, open_machine
from nrt_lab.legacy import packages
from nrt_lab.legacy.client import Client
from nrt_lab.legacy.paths import pid_file
from nrt_lab.legacy.systemctl import SystemctlError, Unit, UnitStatus, format_ago, parse_unit, render_status
from nrt_lab.tools import cli

GOLDEN = Path(__file__).parent / "golden" / "systemctl"
UPDATE = os.environ.get("NRT_LAB_UPDATE_GOLDEN") == "1"
T0 = dt.datetime(2026, 12, 5, 6, 31, 7, tzinfo=dt.timezone.utc).timestamp()
LOG = ("Dec 05 06:31:07 host systemd[1]: Starting Neuron Runtime Daemon...",
       "Dec 05 06:31:08 host nrtd[4242]: [NRTD:RunServer] Server listening on unix:/run/neuron.sock",
       "Dec 05 06:31:08 host systemd[1]: Started Neuron Runtime Daemon.")
CASES = {
    "active": UnitStatus(Unit(), True, "active", "running", T0, 4242, log_lines=LOG),
    "active_instance": UnitStatus(Unit("0"), True, "active", "running", T0 - 3725, 4243),
    "condition": UnitStatus(Unit(), True, "inactive", "dead", condition_failed_at=T0 - 3),
    "failed": UnitStatus(Unit("7"), True, "failed", "failed", T0 - 90061, 4244, 1, result="exit-code",
                         log_lines=("Dec 04 05:30:06 host neuron-rtd[4244]: neuron-rtd: error: config file "
                                    "/opt/aws/neuron/config/nrtd7.json does not exist",)),
    "inactive": UnitStatus(Unit(), True, "inactive", "dead", T0 - 60),
    "not_found": UnitStatus(Unit(), False, "inactive", "dead"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_status_golden(case: str) -> None:
    rendered = render_status(CASES[case], T0 + 5, dt.timezone.utc)
    path = GOLDEN / f"{case}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with NRT_LAB_UPDATE_GOLDEN=1 and review it"
    assert rendered == path.read_text(encoding="utf-8")


def test_relative_times_read_like_systemd() -> None:
    assert [format_ago(s) for s in (0, 59, 60, 61, 3600, 3725, 86400, 90061, 2 * 86400)] == [
        "0s ago", "59s ago", "1min ago", "1min 1s ago", "1h ago", "1h 2min ago", "1 day 0h ago", "1 day 1h ago",
        "2 days 0h ago"]


@pytest.mark.parametrize(("text", "unit"), [("neuron-rtd", Unit()), ("neuron-rtd.service", Unit()),
                                            ("neuron-rtd@0", Unit("0")), ("neuron-rtd@a.b.service", Unit("a.b"))])
def test_unit_names(text: str, unit: Unit) -> None:
    assert parse_unit(text) == unit


@pytest.mark.parametrize(("text", "status", "message"), [
    ("nginx", 5, "Unit nginx not found (nrt-lab systemctl knows neuron-rtd and neuron-rtd@<instance>)"),
    ("neuron-rtd@", 2, "invalid instance name '' in 'neuron-rtd@'"),
    ("neuron-rtd@a/b", 2, "invalid instance name 'a/b'"),
])
def test_bad_unit_names(text: str, status: int, message: str) -> None:
    with pytest.raises(SystemctlError) as exc:
        parse_unit(text)
    assert exc.value.status == status and message in str(exc.value)


def _systemctl(root: Path, path_env: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``nrt-lab systemctl ARGS`` in this process (fast), with ``neuron-rtd`` looked up on ``path_env``."""
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = path_env
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["systemctl", *args])
    finally:
        os.environ["PATH"] = saved
    assert os.environ["NRT_LAB_ROOT"] == str(root)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_unit_needs_its_package_and_the_driver(machine: Machine, tmp_path: Path) -> None:
    path = fake_on_path(tmp_path / "bin")
    result = _systemctl(machine.root, path, "start", "neuron-rtd")
    assert result.returncode == 5
    assert result.stderr == ("Failed to start neuron-rtd.service: Unit neuron-rtd.service not found. (install it: "
                             "nrt-lab pkg install aws-neuron-runtime)\n")
    status = _systemctl(machine.root, path, "status", "neuron-rtd")
    assert (status.returncode, status.stdout) == (4, "Unit neuron-rtd.service could not be found.\n")

    packages.install(machine, "aws-neuron-runtime")
    machine.uninstall_driver()
    result = _systemctl(machine.root, path, "start", "neuron-rtd")
    assert result.returncode == 0  # like systemd: a failed condition is not an error, the unit just stays dead
    assert "start condition failed: ConditionPathExistsGlob=/dev/neuron* was not met" in result.stderr
    status = _systemctl(machine.root, path, "status", "neuron-rtd")
    assert status.returncode == 3
    lines = status.stdout.splitlines()
    assert lines[2] == "   Active: inactive (dead)"
    assert lines[3].startswith("Condition: start condition failed at ")
    assert lines[4] == "           └─ ConditionPathExistsGlob=/dev/neuron* was not met"
    assert "Condition check resulted in Neuron Runtime Daemon being skipped." in status.stdout
    assert not pid_file(machine.root).exists() and not machine.owners()


def test_start_status_stop_restart_a_real_daemon_process(machine: Machine, tmp_path: Path) -> None:
    path = fake_on_path(tmp_path / "bin")
    packages.install(machine, "aws-neuron-runtime")
    assert _systemctl(machine.root, path, "start", "neuron-rtd").returncode == 0
    pid = int(pid_file(machine.root).read_text())
    (owner,) = machine.owners()
    assert owner.pid == pid and owner.is_daemon and owner.command.startswith("neuron-rtd")
    status = _systemctl(machine.root, path, "status", "neuron-rtd")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0] == "● neuron-rtd.service - Neuron Runtime Daemon"
    assert lines[1] == "   Loaded: loaded (/lib/systemd/system/neuron-rtd.service; enabled; vendor preset: enabled)"
    assert lines[2].startswith("   Active: active (running) since ")
    assert lines[3] == f" Main PID: {pid} (neuron-rtd)"
    assert lines[5] == (f"           └─{pid} /opt/aws/neuron/bin/neuron-rtd -c "
                        "/opt/aws/neuron/config/neuron-rtd.config")
    assert f"nrtd[{pid}]: [NRTD:RunServer] Server listening on unix:/run/neuron.sock" in status.stdout
    assert status.stdout.rstrip().endswith("Started Neuron Runtime Daemon.")
    assert _systemctl(machine.root, path, "start", "neuron-rtd").returncode == 0  # already active: nothing
    assert int(pid_file(machine.root).read_text()) == pid

    assert _systemctl(machine.root, path, "restart", "neuron-rtd").returncode == 0
    new_pid = int(pid_file(machine.root).read_text())
    assert new_pid != pid and [o.pid for o in machine.owners()] == [new_pid]

    assert _systemctl(machine.root, path, "stop", "neuron-rtd").returncode == 0
    assert not pid_file(machine.root).exists() and machine.owners() == []
    status = _systemctl(machine.root, path, "status", "neuron-rtd")
    assert status.returncode == 3
    assert status.stdout.splitlines()[2].startswith("   Active: inactive (dead) since ")
    assert "Stopped Neuron Runtime Daemon." in status.stdout
    assert _systemctl(machine.root, path, "stop", "neuron-rtd").returncode == 0  # stopping a dead unit: fine


def test_template_instances_and_a_failing_instance(machine: Machine, tmp_path: Path) -> None:
    path = fake_on_path(tmp_path / "bin")
    packages.install(machine, "aws-neuron-runtime")
    config_dir = machine.root / "opt" / "aws" / "neuron" / "config"
    (config_dir / "nrtd0.json").write_text(
        '{"name":"nrtd0","server_port":"unix:/run/neuron.sock0","devices":[0]}', encoding="utf-8")
    (config_dir / "nrtd1.json").write_text(
        '{"name":"nrtd1","server_port":"unix:/run/neuron.sock1","devices":[1]}', encoding="utf-8")
    result = _systemctl(machine.root, path, "start", "neuron-rtd@0", "neuron-rtd@1")
    assert result.returncode == 0, result.stderr
    owners = sorted(machine.owners(), key=lambda o: o.extra["instance"])
    assert [(o.extra["instance"], o.extra["address"]) for o in owners] == [
        ("0", "unix:/run/neuron.sock0"), ("1", "unix:/run/neuron.sock1")]
    failed = _systemctl(machine.root, path, "start", "neuron-rtd@9")
    assert failed.returncode == 1
    assert failed.stderr.startswith("Job for neuron-rtd@9.service failed because the control process exited with "
                                    "error code.\n")
    status = _systemctl(machine.root, path, "status", "neuron-rtd@9")
    assert status.returncode == 3
    assert "   Active: failed (Result: exit-code) since " in status.stdout
    assert "(code=exited, status=1/FAILURE)" in status.stdout
    assert "config file /opt/aws/neuron/config/nrtd9.json does not exist" in status.stdout
    assert _systemctl(machine.root, path, "stop", "neuron-rtd@0", "neuron-rtd@1").returncode == 0
    assert machine.owners() == []


def test_the_real_neuron_rtd_under_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The integration: ``nrt-lab systemctl`` starts the real daemon (nrt_lab.legacy.daemon), which serves, holds
    its devices with the daemon's owner record and logs to the syslog; stop frees everything."""
    for root in short_root():
        monkeypatch.setenv("NRT_LAB_ROOT", str(root))
        machine = open_machine(root)
        packages.install(machine, "aws-neuron-runtime")
        write_config(root, "nrtd0.json", {"name": "nrtd0", "server_port": "unix:/run/neuron.sock0", "devices": [0]})
        no_rtd = str(tmp_path / "empty") + os.pathsep + "/usr/bin:/bin"  # no neuron-rtd script: run the module
        result = _systemctl(root, no_rtd, "start", "neuron-rtd@0")
        assert result.returncode == 0, (result.stderr, (root / "log" / "syslog").read_text())
        pid = int(pid_file(root, "0").read_text())
        (owner,) = machine.owners()
        assert owner.pid == pid and owner.is_daemon and owner.extra["address"] == "unix:/run/neuron.sock0"
        assert owner.cores == (0, 1, 2, 3) and (root / "run" / "neuron.sock0").is_socket()
        status = _systemctl(root, no_rtd, "status", "neuron-rtd@0")
        assert status.returncode == 0 and f" Main PID: {pid} (neuron-rtd)" in status.stdout
        assert f"nrtd[{pid}]: [NRTD:RunServer] Server listening on unix:/run/neuron.sock0" in status.stdout
        # An upgrade with the daemon running (docs/legacy.md): it keeps its version until restarted.
        assert owner.runtime_version == "1.6.9.0"
        packages.install(machine, "aws-neuron-runtime", "1.6.24.0")
        assert [o.runtime_version for o in machine.owners()] == ["1.6.9.0"]
        assert _systemctl(root, no_rtd, "restart", "neuron-rtd@0").returncode == 0
        (owner,) = machine.owners()
        assert owner.runtime_version == "1.6.24.0" and owner.pid != pid
        with Client(env={"NRT_LAB_ROOT": str(root), "NEURON_RTD_ADDRESS": "unix:/run/neuron.sock0"}) as client:
            assert client.runtime_version == "1.6.24.0"
        assert _systemctl(root, no_rtd, "stop", "neuron-rtd@0").returncode == 0
        assert machine.owners() == [] and not pid_file(root, "0").exists()
        assert not (root / "run" / "neuron.sock0").exists()


def test_a_killed_daemon_leaves_the_unit_failed_and_its_devices_free(machine: Machine, tmp_path: Path) -> None:
    path = fake_on_path(tmp_path / "bin")
    packages.install(machine, "aws-neuron-runtime")
    assert _systemctl(machine.root, path, "start", "neuron-rtd").returncode == 0
    pid = int(pid_file(machine.root).read_text())
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # our child here (the CLI ran in this process); systemd's init would reap it
    assert machine.owners() == []  # the kernel dropped its locks at once
    status = _systemctl(machine.root, path, "status", "neuron-rtd")
    assert status.returncode == 3
    assert "   Active: failed (Result: signal) since " in status.stdout
    (machine.root / "run" / "neuron-rtd.unit.json").write_text("{garbage", encoding="utf-8")
    status = _systemctl(machine.root, path, "status", "neuron-rtd")  # a damaged unit record is forgotten
    assert status.returncode == 3 and "   Active: inactive (dead)" in status.stdout
    assert _systemctl(machine.root, path, "start", "neuron-rtd").returncode == 0  # a stale pid file is no obstacle
    assert _systemctl(machine.root, path, "stop", "neuron-rtd").returncode == 0


def test_negative_line_count_is_a_usage_error(machine: Machine, tmp_path: Path) -> None:
    result = _systemctl(machine.root, os.environ["PATH"], "status", "-n", "-1", "neuron-rtd")
    assert result.returncode == 2 and result.stderr == "nrt-lab systemctl: error: --lines -1: accepted: 0 or more\n"
