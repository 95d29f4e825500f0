"""The runtime's life cycle (docs/behaviour.md §0, §2): init/close, re-init, owner records, threads, fork, driver gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import nrt_lab
from conftest import OwnerFactory, assert_single_log_line, child_environment, parse_log_lines, run_python
from nrt_lab import NrtError, NrtStatus
from nrt_lab.driver import DEFAULT_DRIVER_VERSION, Machine, parse_driver_version
from nrt_lab.runtime import require_runtime

DRIVER_MISSING = "Unable to determine Neuron Driver version. Please check aws-neuron-dkms package is installed."
DRIVER_TOO_OLD = "This runtime requires Neuron Driver version 2.0 or greater. Please upgrade aws-neuron-dkms package."


# ------------------------------------------------------------------------------------------------ init / close


def test_init_returns_a_runtime_with_its_cores(machine_root: Path, machine: Machine) -> None:
    runtime = nrt_lab.init()
    assert isinstance(runtime, nrt_lab.Runtime)
    assert runtime.cores == tuple(range(32))
    assert (runtime.visible_nc_count, runtime.total_nc_count, runtime.lnc) == (32, 32, 1)
    assert runtime.instance.name == "trn1.32xlarge"
    assert runtime.instance_id == machine.state().instance_id
    assert runtime.pid == os.getpid()
    assert runtime.framework == nrt_lab.Framework.NO_FW
    assert nrt_lab.get_runtime() is runtime
    assert require_runtime() is runtime
    assert not runtime.closed
    (record,) = machine.owners()
    assert (record.pid, record.cores, record.runtime_version, record.lnc) == (
        os.getpid(), tuple(range(32)), nrt_lab.RUNTIME_VERSION, 1)
    assert abs(record.start_time - time.time()) < 60
    assert record.extra.get("framework") == "NO_FW"
    assert record.command == " ".join(
        p.decode() for p in Path("/proc/self/cmdline").read_bytes().split(b"\0") if p)
    nrt_lab.close()


def test_close_is_idempotent_and_releases(machine_root: Path, machine: Machine) -> None:
    runtime = nrt_lab.init()
    assert runtime.close() is None
    assert runtime.closed
    runtime.close()
    nrt_lab.close()
    assert nrt_lab.close() is None
    assert nrt_lab.get_runtime() is None
    assert machine.owners() == []
    assert list((machine_root / "procs").glob("*.json")) == []
    for call in (runtime.check_open, lambda: runtime.global_core(0), require_runtime):
        with pytest.raises(NrtError) as info:
            call()
        assert info.value.status == NrtStatus.CLOSED
    again = nrt_lab.init()
    assert again is not runtime and again.cores == tuple(range(32))
    runtime.close()  # closing the old handle must not touch the new runtime
    assert not again.closed and nrt_lab.get_runtime() is again
    assert [o.cores for o in machine.owners()] == [tuple(range(32))]


def test_context_manager(machine_root: Path, machine: Machine) -> None:
    with nrt_lab.init() as runtime:
        assert [o.pid for o in machine.owners()] == [os.getpid()]
    assert runtime.closed
    assert machine.owners() == []
    with pytest.raises(RuntimeError):
        with nrt_lab.init():
            raise RuntimeError("boom")
    assert machine.owners() == [] and nrt_lab.get_runtime() is None


def test_init_while_live_returns_the_same_runtime(machine_root: Path, machine: Machine,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0-1")
    first = nrt_lab.init()
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "5")
    monkeypatch.setenv("NEURON_RT_LOG_LEVEL", "WARN")
    capsys.readouterr()
    assert nrt_lab.init() is first
    assert first.cores == (0, 1)
    assert capsys.readouterr().err == ""  # the first runtime's logger (level ERROR) is kept
    assert len(machine.owners()) == 1


def test_init_after_close_rereads_the_environment(machine_root: Path, machine: Machine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0-1")
    monkeypatch.setenv("NEURON_PROCESS_TAG", "first")
    with nrt_lab.init() as runtime:
        assert (runtime.cores, runtime.tag) == ((0, 1), "first")
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "4-6")
    monkeypatch.setenv("NEURON_PROCESS_TAG", "second")
    with nrt_lab.init() as runtime:
        assert (runtime.cores, runtime.tag) == ((4, 5, 6), "second")
        assert [(o.cores, o.tag) for o in machine.owners()] == [((4, 5, 6), "second")]
    monkeypatch.delenv("NEURON_RT_VISIBLE_CORES")
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    with nrt_lab.init() as runtime:
        assert runtime.cores == (0, 1, 2)
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "x")
    with pytest.raises(NrtError):
        nrt_lab.init()


def test_process_tag_defaults_to_the_pid(machine_root: Path, machine: Machine) -> None:
    with nrt_lab.init() as runtime:
        assert runtime.tag == str(os.getpid())
        assert [o.tag for o in machine.owners()] == [str(os.getpid())]


def test_process_tag_of_real_owners(owner_process: OwnerFactory, machine: Machine) -> None:
    tagged = owner_process({"NEURON_PROCESS_TAG": "ray-worker-7", "NEURON_RT_VISIBLE_CORES": "0"})
    plain = owner_process({"NEURON_RT_VISIBLE_CORES": "1"})
    assert tagged.result()["tag"] == "ray-worker-7"
    assert plain.result()["tag"] == str(plain.pid)
    records = {o.pid: o for o in machine.owners()}
    assert records[tagged.pid].tag == "ray-worker-7"
    assert records[plain.pid].tag == str(plain.pid)
    assert records[tagged.pid].command.startswith(f"{sys.executable} -c # nrt-lab-test-owner ")


def test_framework_types(machine_root: Path, machine: Machine) -> None:
    with nrt_lab.init(3) as runtime:
        assert runtime.framework == nrt_lab.Framework.PYTORCH
        assert machine.owners()[0].extra["framework"] == "PYTORCH"
    with pytest.raises(NrtError) as info:
        nrt_lab.init(99)
    assert info.value.status == NrtStatus.INVALID
    assert machine.owners() == []


def test_counts_before_init(machine_root: Path, machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    assert nrt_lab.get_runtime() is None
    assert nrt_lab.total_nc_count() == 32
    assert nrt_lab.visible_nc_count() == 32
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "4-7")
    assert (nrt_lab.total_nc_count(), nrt_lab.visible_nc_count()) == (32, 4)
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")  # VISIBLE still wins
    assert nrt_lab.visible_nc_count() == 4
    monkeypatch.delenv("NEURON_RT_VISIBLE_CORES")
    assert nrt_lab.visible_nc_count() == 3
    assert machine.owners() == []  # counting claims nothing
    with nrt_lab.init() as runtime:
        assert runtime.cores == (0, 1, 2)
        monkeypatch.setenv("NEURON_RT_NUM_CORES", "7")  # after init the owned count is what matters
        assert (nrt_lab.total_nc_count(), nrt_lab.visible_nc_count()) == (32, 3)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"NEURON_RT_VISIBLE_CORES": ""}, "NEURON_RT_VISIBLE_CORES is empty"),
        ({"NEURON_RT_VISIBLE_CORES": "3,5"}, "Neuron cores are not contiguous"),
        ({"NEURON_RT_VISIBLE_CORES": "40"}, "NEURON_RT_VISIBLE_CORES='40' is invalid"),
        ({"NEURON_RT_NUM_CORES": "x"}, "NEURON_RT_NUM_CORES='x' is invalid"),
        ({"NEURON_LOGICAL_NC_CONFIG": "2"}, "logical NeuronCore config 2 is not accepted for trn1.32xlarge"),
    ],
)
def test_counts_before_init_fail_like_init(machine_root: Path, machine: Machine, env: dict[str, str],
                                          fragment: str) -> None:
    environment = {"NRT_LAB_ROOT": str(machine_root), **env}
    calls = [nrt_lab.visible_nc_count]
    if "NEURON_LOGICAL_NC_CONFIG" in env:  # the total depends on the LNC, and on no other variable
        calls.append(nrt_lab.total_nc_count)
    for call in calls:
        with pytest.raises(NrtError) as info:
            call(env=environment)
        assert info.value.status == NrtStatus.FAILURE and fragment in info.value.message
    if "NEURON_LOGICAL_NC_CONFIG" not in env:
        assert nrt_lab.total_nc_count(env=environment) == 32  # the total ignores the allocation variables
    assert machine.owners() == []


@pytest.mark.instance("inf2.xlarge")
def test_counts_follow_the_instance(machine_root: Path) -> None:
    assert (nrt_lab.total_nc_count(), nrt_lab.visible_nc_count()) == (2, 2)


REQUIRE_SCRIPT = r"""
import json, nrt_lab
from nrt_lab.runtime import require_runtime
seen = []
def probe():
    try:
        require_runtime()
        seen.append(0)
    except nrt_lab.NrtError as exc:
        seen.append(int(exc.status))
probe()
runtime = nrt_lab.init()
probe()
nrt_lab.close()
probe()
with nrt_lab.init():
    probe()
probe()
print(json.dumps(seen))
"""


def test_require_runtime_uninitialized_then_closed(machine_root: Path) -> None:
    done = run_python(REQUIRE_SCRIPT, machine_root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [NrtStatus.UNINITIALIZED, 0, NrtStatus.CLOSED, 0, NrtStatus.CLOSED]
    assert done.stderr == ""


def test_threads_share_the_process_runtime(machine_root: Path, machine: Machine) -> None:
    runtime = nrt_lab.init()
    seen: list[object] = []
    statuses: list[int] = []
    closed = threading.Event()

    def worker() -> None:
        seen.append(require_runtime())
        seen.append(nrt_lab.init())
        closed.wait(10)
        try:
            require_runtime()
        except NrtError as exc:
            statuses.append(int(exc.status))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(seen) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(seen) == 8 and all(s is runtime for s in seen)
    assert [o.pid for o in machine.owners()] == [os.getpid()]
    runtime.close()
    closed.set()
    for thread in threads:
        thread.join(10)
    assert statuses == [NrtStatus.CLOSED] * 4


FORK_SCRIPT = r"""
import json, os, signal, sys
signal.alarm(60)
import nrt_lab
runtime = nrt_lab.init()
to_child_r, to_child_w = os.pipe()
from_child_r, from_child_w = os.pipe()
child = os.fork()
if child == 0:
    os.close(to_child_w); os.close(from_child_r)
    os.write(from_child_w, json.dumps({"has_runtime": nrt_lab.get_runtime() is not None}).encode())
    os.close(from_child_w)
    os.read(to_child_r, 1)
    os._exit(0)
os.close(to_child_r); os.close(from_child_w)
view = json.loads(os.read(from_child_r, 4096))
nrt_lab.close()
print(json.dumps({"cores": list(runtime.cores), "child": child, "child_view": view}), flush=True)
sys.stdin.readline()
os.close(to_child_w)
os.waitpid(child, 0)
"""


def test_forked_child_does_not_keep_the_parents_cores(machine_root: Path, machine: Machine) -> None:
    proc = subprocess.Popen([sys.executable, "-c", FORK_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_environment(machine_root))
    try:
        assert proc.stdout is not None and proc.stdin is not None
        report = json.loads(proc.stdout.readline() or "null")
        assert report is not None, proc.stderr.read() if proc.stderr else ""
        assert report["cores"] == list(range(32))
        assert report["child_view"] == {"has_runtime": False}
        os.kill(report["child"], 0)  # the forked child is still alive ...
        assert machine.owners() == []  # ... yet owns nothing once the parent closed
        with nrt_lab.init() as runtime:
            assert runtime.cores == tuple(range(32))
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ------------------------------------------------------------------------------------------------ driver gate


def _init_failure(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[NrtError, str]:
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        nrt_lab.init(env={"NRT_LAB_ROOT": str(root)})
    assert info.value.status == NrtStatus.FAILURE
    return info.value, capsys.readouterr().err


def test_driver_uninstalled(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    machine.uninstall_driver()
    assert machine.driver() is None
    error, err = _init_failure(machine_root, capsys)
    assert error.message == DRIVER_MISSING
    assert_single_log_line(err, "ERROR", "NRT", "nrt_init", DRIVER_MISSING, pid=os.getpid())
    assert machine.owners() == []
    machine.install_driver()
    with nrt_lab.init() as runtime:
        assert len(runtime.cores) == 32


@pytest.mark.parametrize("version", ["1.9", "2.0.0.0", "2.1.4.9"])
def test_driver_too_old(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str],
                        version: str) -> None:
    state = machine.install_driver(parse_driver_version(version))
    assert state.loaded == parse_driver_version(version)
    error, err = _init_failure(machine_root, capsys)
    assert error.message.startswith(DRIVER_TOO_OLD)
    assert f"loaded driver {parse_driver_version(version)}" in error.message
    assert_single_log_line(err, "ERROR", "NRT", "nrt_init", DRIVER_TOO_OLD)
    assert machine.owners() == []


@pytest.mark.parametrize("version", ["2.1.5.0", "2.1.5", "2.24.7.0", "3.0"])
def test_driver_new_enough(machine_root: Path, machine: Machine, version: str) -> None:
    machine.install_driver(parse_driver_version(version))
    with nrt_lab.init() as runtime:
        assert len(runtime.cores) == 32


def test_driver_install_while_in_use_is_pending_until_reload(owner_process: OwnerFactory, machine: Machine,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    owner = owner_process({"NEURON_RT_VISIBLE_CORES": "0"})
    assert owner.cores == (0,)
    state = machine.install_driver(parse_driver_version("1.9"))
    assert (state.installed, state.loaded, state.reload_pending) == (
        parse_driver_version("1.9"), DEFAULT_DRIVER_VERSION, True)
    # The loaded module is unchanged, so a new runtime still starts.
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine.root), "NEURON_RT_VISIBLE_CORES": "1"}) as runtime:
        assert runtime.cores == (1,)
    with pytest.raises(nrt_lab.StateError) as refused:
        machine.reload_driver()
    assert f"pid {owner.pid} (" in str(refused.value)
    assert machine.driver() == state
    assert owner.exit() == 0
    reloaded = machine.reload_driver()
    assert (reloaded.loaded, reloaded.reload_pending) == (parse_driver_version("1.9"), False)
    error, err = _init_failure(machine.root, capsys)
    assert error.message.startswith(DRIVER_TOO_OLD)
    assert [line.message for line in parse_log_lines(err)] == [DRIVER_TOO_OLD]
