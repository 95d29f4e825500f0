"""Process actions of nrt_lab.monitor: release, and a terminate that only signals a verified runtime.

A forged owner record (one naming an unrelated live process, its lock held by someone else) once made CoreMap's
Terminate SIGTERM that process; these tests forge such records against real processes and check that nothing
is signalled, and that a real runtime is still terminated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nrt_lab
from conftest import child_environment, kill_children
from nrt_lab.driver import Machine, OwnerRecord
from nrt_lab.driver.locks import CoreClaim
from nrt_lab.monitor import ActionRefused, release, terminate, verify_target
from nrt_lab.runtime import RUNTIME_VERSION
from nrt_lab.widgets import CoreMap

# A child that publishes an owner record naming itself, with the command and start time it is told to claim:
# its lock is really held by itself, so only the start-time and command checks can catch the lie.
_SELF_FORGER = r"""
import json, os, sys, time
from pathlib import Path
from nrt_lab.driver import OwnerRecord
from nrt_lab.driver.locks import CoreClaim
from nrt_lab.runtime import RUNTIME_VERSION
root = Path(os.environ["NRT_LAB_ROOT"])
claim = CoreClaim(root=root, physical_cores=())
claim.publish(OwnerRecord(pid=os.getpid(), command=os.environ["FORGED_COMMAND"], runtime_version=RUNTIME_VERSION,
                          cores=(0, 1), tag="forged", start_time=time.time() + float(os.environ["FORGED_SHIFT"])))
print("ready", flush=True)
sys.stdin.read()
"""

_RUNTIME = r"""
import json, os, sys
import nrt_lab
rt = nrt_lab.init()
print(json.dumps({"pid": os.getpid(), "cores": list(rt.cores)}), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes to kill at teardown."""
    made: list[subprocess.Popen[str]] = []
    yield made
    kill_children(made)


def _spawn(children: list[subprocess.Popen[str]], args: list[str], env: dict[str, str] | None = None,
           root: Path | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(args, env=child_environment(root, env or {}) if root is not None else None, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children.append(proc)
    return proc


def _forge(machine: Machine, pid: int, command: str) -> CoreClaim:
    """Publish, from this process (so this process holds its lock), a runtime's record naming ``pid``."""
    claim = CoreClaim(root=machine.root, physical_cores=())
    claim.publish(OwnerRecord(pid=pid, command=command, runtime_version=RUNTIME_VERSION, cores=(0, 1, 2, 3),
                              tag="forged", start_time=time.time()))
    return claim


def test_forged_record_naming_an_unrelated_process_is_refused(machine: Machine,
                                                              children: list[subprocess.Popen[str]]) -> None:
    sleeper = _spawn(children, ["sleep", "30"])
    claim = _forge(machine, sleeper.pid, "sleep 30")  # even the command line matches
    try:
        assert sleeper.pid in {o.pid for o in machine.owners()}  # readers do list it: its lock is held
        with pytest.raises(ActionRefused, match=f"not held by pid {sleeper.pid}"):
            terminate(sleeper.pid)
        # The widget path: select, confirm; the confirmation is refused and nothing is sent.
        core_map = CoreMap(autostart=False)
        try:
            core_map.request_terminate(sleeper.pid)
            with pytest.raises(ActionRefused, match="forged or stale record"):
                core_map.confirm_terminate(sleeper.pid)
            assert core_map.pending == {} and core_map.message.startswith("Refused")
        finally:
            core_map.close()
        assert sleeper.poll() is None, "a forged record made us signal an unrelated process"
    finally:
        claim.release()


@pytest.mark.parametrize(
    ("command", "shift", "reason"),
    [
        ("python -c something-else", 0.0, "not the command of its owner record"),
        (None, -3600.0, "started after its owner record was written"),
    ],
)
def test_record_that_disagrees_with_its_process_is_refused(machine: Machine, children: list[subprocess.Popen[str]],
                                                           command: str | None, shift: float, reason: str) -> None:
    args = [sys.executable, "-c", _SELF_FORGER]
    forged = command if command is not None else " ".join(args).replace("\n", " ")
    proc = _spawn(children, args, {"FORGED_COMMAND": forged, "FORGED_SHIFT": str(shift)}, root=machine.root)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
    with pytest.raises(ActionRefused, match=reason):
        terminate(proc.pid)
    assert proc.poll() is None


def test_terminate_signals_a_verified_runtime(machine: Machine, children: list[subprocess.Popen[str]]) -> None:
    proc = _spawn(children, [sys.executable, "-c", _RUNTIME], {"NEURON_RT_NUM_CORES": "2"}, root=machine.root)
    assert proc.stdout is not None
    owner = json.loads(proc.stdout.readline())
    target = verify_target(owner["pid"])
    assert target.record.pid == owner["pid"] and list(target.record.cores) == owner["cores"]
    with pytest.raises(ActionRefused, match="no longer owns"):
        terminate(owner["pid"], start_time=target.record.start_time - 1.0)  # not the process selected
    assert proc.poll() is None
    text = terminate(owner["pid"], start_time=target.record.start_time)
    assert text.startswith(f"Sent SIGTERM to pid {owner['pid']}")
    assert proc.wait(timeout=15) == -signal.SIGTERM
    assert machine.owners() == []


def test_terminate_refuses_this_process_non_owners_and_device_users(machine: Machine,
                                                                    children: list[subprocess.Popen[str]]) -> None:
    with pytest.raises(ActionRefused, match="is this process"):
        terminate(os.getpid())
    sleeper = _spawn(children, ["sleep", "30"])
    with pytest.raises(ActionRefused, match="does not own any NeuronCore"):
        terminate(sleeper.pid)
    from nrt_lab.driver.locks import open_devices

    user = open_devices(machine.root, "neuron-top")  # a device user: listed, but not a runtime
    try:
        with pytest.raises(ActionRefused, match="is this process"):
            terminate(os.getpid())
        claim = CoreClaim(root=machine.root, physical_cores=())
        claim.publish(OwnerRecord(pid=sleeper.pid, command="sleep 30", runtime_version="NA", cores=(),
                                  start_time=time.time()))
        with pytest.raises(ActionRefused, match="is not a Neuron runtime"):
            terminate(sleeper.pid)
        claim.release()
    finally:
        user.release()
    assert sleeper.poll() is None


def test_release_closes_this_process_runtime(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    assert release() == "This process holds no NeuronCore (no live runtime): nothing to release."
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "2")
    nrt_lab.init()
    assert release() == "Released this process's NeuronCores nc0-nc1 (nrt_lab.close())."
    assert nrt_lab.get_runtime() is None and machine.owners() == []
