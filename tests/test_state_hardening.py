"""The driver's state root under attack (issue 10's red-team defects 1, 4, 5, 6, 7, 9): races between listing and
opening, hostile state files (FIFO, link to /dev/zero, huge, deeply nested), planted links, umask 000, readable
roots, a root swapped for a link, temp files left by SIGKILL, bad ``NRT_LAB_ROOT`` values, and init reading the
machine once. Every case ends in one clear error naming the file (or variable), never a hang or a traceback."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nrt_lab
from conftest import child_environment
from nrt_lab import NrtError
from nrt_lab.driver import StateError, open_machine
from nrt_lab.driver import counters as counters_module
from nrt_lab.driver import locks as locks_module
from nrt_lab.driver import machine as machine_module
from nrt_lab.driver.counters import add_core_values, read_counters
from nrt_lab.driver.faults import inject_fault, list_faults
from nrt_lab.driver.locks import list_owners, probe_free, remove_stale_records, try_claim
from nrt_lab.driver.state import atomic_write_json, read_state_json, resolve_root
from nrt_lab.driver.stats import StatsPage, read_stats
from nrt_lab.models import build_add
from nrt_lab.runtime import Model


@pytest.fixture
def alarm() -> Iterator[None]:
    """Turn a hang into a test failure (a FIFO read blocks forever without O_NONBLOCK)."""

    def timeout(_signum: int, _frame: object) -> None:
        raise TimeoutError("the reader hung")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ------------------------------------------------------------------------------------------------ defect 1: races


def test_record_deleted_between_listing_and_opening_is_skipped(machine_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = locks_module.list_state_dir

    def listing_with_a_vanished_owner(path: Path) -> list[str]:
        names = real(path)
        return [*names, "4242.deadbeef.lock", "4242.deadbeef.json"] if path.name == "procs" else names

    monkeypatch.setattr(locks_module, "list_state_dir", listing_with_a_vanished_owner)
    assert remove_stale_records(machine_root) == 0
    with nrt_lab.init() as runtime:  # the same pass runs inside init
        assert runtime.cores


_CYCLER = """
import sys, nrt_lab
for _ in range(int(sys.argv[1])):
    nrt_lab.init()
    nrt_lab.close()
print("ok")
"""


def test_concurrent_init_close_never_leaks_an_exception(machine_root: Path) -> None:
    env = {**child_environment(machine_root), "NEURON_RT_NUM_CORES": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _CYCLER, "30"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert (proc.returncode, out, err) == (0, "ok\n", "")
    assert list_owners(machine_root) == []
    assert os.listdir(machine_root / "procs") == []


# ------------------------------------------------------------------------------------------------ defect 5: files

def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)


def _dev_zero(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


def _huge(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)  # sparse: 64 MiB of zeros


def _deep(path: Path) -> None:
    path.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")


HOSTILE: list[tuple[str, Callable[[Path], None], str]] = [
    ("fifo", _fifo, "it is a FIFO, not a regular file"),
    ("dev-zero-link", _dev_zero, "it is a symbolic link (never followed)"),
    ("huge", _huge, "bytes; accepted: at most"),
    ("deep", _deep, "JSON nested too deeply"),
]


@pytest.mark.parametrize(("make", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("name", ["machine.json", "driver.json"])
def test_hostile_machine_and_driver_files(machine_root: Path, alarm: None, name: str,
                                          make: Callable[[Path], None], reason: str) -> None:
    path = machine_root / name
    make(path)
    machine = open_machine(machine_root)
    with pytest.raises(StateError) as caught:
        if name == "machine.json":
            machine.state()
        else:
            machine.driver()
    message = str(caught.value)
    assert message.startswith(f"{'machine' if name == 'machine.json' else 'driver'} file {path} ")
    assert reason in message
    with pytest.raises(NrtError) as failed:
        nrt_lab.init()
    assert str(path) in str(failed.value)


@pytest.mark.parametrize("make", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_owner_fault_and_counter_files_are_skipped(machine_root: Path, alarm: None,
                                                           make: Callable[[Path], None]) -> None:
    with nrt_lab.init(env={"NEURON_RT_NUM_CORES": "1", "NRT_LAB_ROOT": str(machine_root)}) as runtime:
        record = runtime._claim.record_path if runtime._claim else None
        assert record is not None
        make(record)  # the live owner's record
        make(record.with_suffix(".models"))
        inject_fault(machine_root, kind="nan", core=5)
        make(machine_root / "faults" / "f1.json")
        make(machine_root / "counters.bin")
        assert list_owners(machine_root) == []
        assert list_faults(machine_root) == []
        instance_id = runtime.instance_id
        assert read_counters(machine_root, instance_id).cores == {}
    assert os.listdir(machine_root / "procs") == []


def test_read_state_json_refuses_huge_numbers(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": ' + "9" * 5000 + "}", encoding="utf-8")
    with pytest.raises(StateError, match=r"x\.json is corrupted"):
        read_state_json(path, "test file")


def test_stats_page_with_flipped_bytes_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "1.abcd.stats"
    page = StatsPage(path, [4, 5])
    snapshot = read_stats(path)
    assert snapshot is not None and [c.core for c in snapshot.cores] == [4, 5]
    with open(path, "r+b") as fh:  # the first core block's core id word: 4 -> 255 + 2**32
        fh.seek(32 * 8)
        fh.write((255 + (1 << 32)).to_bytes(8, "little"))
    assert read_stats(path) is None
    with open(path, "r+b") as fh:  # both blocks claim core 5
        fh.seek(32 * 8)
        fh.write((5).to_bytes(8, "little"))
    assert read_stats(path) is None
    page.close()
    page2 = StatsPage(path, [40])
    assert read_stats(path, core_limit=32) is None  # core 40 does not exist on a 32-core machine
    assert read_stats(path) is not None
    page2.close()


def test_stats_page_fifo_is_unreadable(tmp_path: Path, alarm: None) -> None:
    path = tmp_path / "1.abcd.stats"
    os.mkfifo(path)
    assert read_stats(path) is None


# ------------------------------------------------------------------------------------------------ defects 6, 7


@pytest.mark.parametrize("sub", ["procs", "locks", "log", "faults"])
def test_planted_directory_links_are_refused(machine_root: Path, tmp_path: Path, sub: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("1.dead.lock", "1.dead.json", "1.dead.stats", "victim", "nc0.lock", "alloc.lock", "syslog"):
        (elsewhere / name).write_text("keep me\n", encoding="utf-8")
    before = {p.name: p.read_text(encoding="utf-8") for p in elsewhere.iterdir()}
    target = machine_root / sub
    for child in list(target.iterdir()):
        child.unlink()
    target.rmdir()
    target.symlink_to(elsewhere, target_is_directory=True)
    env = {"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_LOG_LEVEL": "INFO", "NEURON_RT_LOG_LOCATION": "syslog"}
    with pytest.raises(NrtError) as caught:
        nrt_lab.init(env=env)
    assert f"state path {target} is a symbolic link" in str(caught.value)
    with pytest.raises(StateError):
        open_machine(machine_root)
    assert {p.name: p.read_text(encoding="utf-8") for p in elsewhere.iterdir()} == before


@pytest.mark.parametrize("name", ["cores.lock", "alloc.lock"])
def test_planted_lock_file_fifo_is_an_nrt_error(machine_root: Path, alarm: None, name: str) -> None:
    path = machine_root / "locks" / name
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)
    with pytest.raises(NrtError) as caught:
        nrt_lab.init()
    assert f"state file {path} cannot be used: it is a FIFO, not a regular file" in str(caught.value)


def test_planted_syslog_link_is_never_written(machine_root: Path, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    syslog = machine_root / "log" / "syslog"
    syslog.unlink(missing_ok=True)
    syslog.symlink_to(victim)
    env = {"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_LOG_LEVEL": "INFO", "NEURON_RT_LOG_LOCATION": "syslog"}
    with nrt_lab.init(env=env):
        pass
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    assert "Neuron Runtime" in capfd.readouterr().err  # the line fell back to the console


def test_umask_000_still_creates_private_files(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    env = {"NRT_LAB_ROOT": str(root), "NEURON_RT_LOG_LEVEL": "INFO", "NEURON_RT_LOG_LOCATION": "syslog",
           "NEURON_RT_NUM_CORES": "2"}
    old = os.umask(0)
    try:
        with nrt_lab.init(env=env) as runtime:
            Model.load(build_add().neff, 0)
            inject_fault(root, kind="nan", core=31)
            add_core_values(root, runtime.instance_id, [0], {"reset_req_count": 1})
            live = {p: stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert (root / "log" / "syslog") in live and (root / "counters.bin").exists()
    for path, mode in live.items():
        assert mode == (0o700 if path.is_dir() else 0o600), path
    for path in root.rglob("*"):
        assert stat.S_IMODE(path.lstat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_readable_root_is_repaired_with_a_warning(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    machine_root.chmod(0o755)
    open_machine(machine_root)
    assert stat.S_IMODE(machine_root.stat().st_mode) == 0o700
    err = capsys.readouterr().err
    assert err == (f"nrt-lab: warning: state root {machine_root} had permissions 0755; changed to 0700 "
                   "(owner records are private)\n")


def test_root_swapped_for_a_link_after_the_check_is_refused(machine_root: Path, tmp_path: Path) -> None:
    machine = open_machine(machine_root)
    other = tmp_path / "attacker"
    other.mkdir(mode=0o700)
    machine_root.rename(tmp_path / "moved")
    machine_root.symlink_to(other, target_is_directory=True)
    with pytest.raises(NrtError, match="is a symbolic link"):
        nrt_lab.init()
    with pytest.raises(StateError):
        atomic_write_json(machine.root / "machine.json", {"x": 1})
    with pytest.raises(StateError):
        machine.state()
    assert list(other.iterdir()) == []  # no second machine was built there


# ------------------------------------------------------------------------------------------------ defect 9


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_dead_writers_are_removed_on_next_start(machine_root: Path) -> None:
    dead = _dead_pid()
    stale = [machine_root / f".machine.json.{dead}.0badf00d.tmp", machine_root / "procs" / f".1.ab.json.{dead}.x.tmp",
             machine_root / "faults" / f".f3.json.{dead}.0123.tmp"]
    live = machine_root / "procs" / f".1.ab.json.{os.getppid()}.live.tmp"
    old_unnamed = machine_root / ".driver.json.k3j_x9a2.tmp"  # mkstemp name of an earlier version, 2 hours old
    recent_unnamed = machine_root / ".driver.json.abcdefgh.tmp"
    for path in [*stale, live, old_unnamed, recent_unnamed]:
        path.write_text("{", encoding="utf-8")
    two_hours_ago = time.time() - 7200
    os.utime(old_unnamed, (two_hours_ago, two_hours_ago))
    with nrt_lab.init():
        pass
    assert [p for p in [*stale, old_unnamed] if p.exists()] == []
    assert live.exists() and recent_unnamed.exists()


def test_clean_close_leaves_no_owner_files(machine_root: Path) -> None:
    with nrt_lab.init(env={"NEURON_RT_NUM_CORES": "1", "NRT_LAB_ROOT": str(machine_root)}):
        Model.load(build_add().neff, 0)
        assert any(n.endswith(".models") for n in os.listdir(machine_root / "procs"))
    assert os.listdir(machine_root / "procs") == []


# ------------------------------------------------------------------------------------------------ defect 4: root


@pytest.mark.parametrize(("value", "problem"), [
    ("/tmp/a\x00b", "contains a NUL character"),
    ("/" + "a" * 5000, "is longer than 4095 bytes"),
    ("/tmp/" + "b" * 300 + "/x", "has a path component longer than 255 bytes"),
])
def test_malformed_nrt_lab_root(value: str, problem: str) -> None:
    shown = value if len(value) <= 200 else value[:200] + "…"
    with pytest.raises(StateError) as caught:
        resolve_root({"NRT_LAB_ROOT": value})
    assert str(caught.value).startswith(f"NRT_LAB_ROOT={shown!r} is invalid: the path {problem}; accepted: ")
    with pytest.raises(NrtError, match="NRT_LAB_ROOT="):
        nrt_lab.init(env={"NRT_LAB_ROOT": value})


def test_nrt_lab_root_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    root = blocker / "state"
    with pytest.raises(NrtError) as caught:
        nrt_lab.init(env={"NRT_LAB_ROOT": str(root)})
    assert f"state root {root} cannot be created (a parent is not a directory)" in str(caught.value)
    assert "set NRT_LAB_ROOT to such a path" in str(caught.value)


# ------------------------------------------------------------------------------------------------ init reads once


def test_init_reads_the_machine_once(machine_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"machine": 0, "driver": 0}
    real_machine, real_driver = machine_module.read_machine, machine_module.read_driver

    def count_machine(root: Path) -> object:
        calls["machine"] += 1
        return real_machine(root)

    def count_driver(root: Path) -> object:
        calls["driver"] += 1
        return real_driver(root)

    monkeypatch.setattr(machine_module, "read_machine", count_machine)
    monkeypatch.setattr(counters_module, "read_machine", count_machine)
    monkeypatch.setattr(machine_module, "read_driver", count_driver)
    runtime = nrt_lab.init()
    assert calls == {"machine": 1, "driver": 1}
    runtime.close()
    assert calls == {"machine": 1, "driver": 1}  # close knows the machine: no re-read to fold the counters


# ------------------------------------------------------------------------------------------------ counters


def test_counters_fold_touches_only_the_closing_cores(machine_root: Path) -> None:
    env = {"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VISIBLE_CORES": "0-31"}
    with nrt_lab.init(env=env) as runtime:
        Model.load(build_add().neff, 0)
        instance_id = runtime.instance_id
    everything = read_counters(machine_root, instance_id)
    assert 0 in everything.cores
    size = (machine_root / "counters.bin").stat().st_size
    with nrt_lab.init(env={**env, "NEURON_RT_VISIBLE_CORES": "3"}):  # one more reset request on core 3
        pass
    after = read_counters(machine_root, instance_id)
    assert (machine_root / "counters.bin").stat().st_size == size
    assert after.cores[3].values["reset_req_count"] == everything.cores[3].values["reset_req_count"] + 1
    assert after.cores[0] == everything.cores[0]
    assert read_counters(machine_root, "i-0another").cores == {}


# ------------------------------------------------------------------------------------------------ core locks


def test_core_locks_probe_every_owner_whatever_the_order(machine_root: Path) -> None:
    open_machine(machine_root).create("trn2.48xlarge", 1)
    later = try_claim(machine_root, [10, 11])
    earlier = try_claim(machine_root, [2, 3])
    assert later is not None and earlier is not None
    assert try_claim(machine_root, [3, 4]) is None  # all or nothing: 4 stays free
    split = try_claim(machine_root, [0, 1, 5, 6, 127])
    assert split is not None
    held = [core for core, free in enumerate(probe_free(machine_root, 128)) if not free]
    assert held == [0, 1, 2, 3, 5, 6, 10, 11, 127]
    later.release()
    split.release()
    assert [core for core, free in enumerate(probe_free(machine_root, 128)) if not free] == [2, 3]
    earlier.release()
    assert all(probe_free(machine_root, 128))


def test_held_roots_are_bounded_and_reopened(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    roots = [tmp_path / f"m{i}" for i in range(40)]
    for root in roots:
        open_machine(root).state()
    assert len(os.listdir("/proc/self/fd")) - before <= 16
    first = open_machine(roots[0])  # evicted long ago: reopened and checked again
    assert first.state().instance.name == "trn1.32xlarge"
    roots[1].chmod(0o755)
    open_machine(roots[1])
    assert stat.S_IMODE(roots[1].stat().st_mode) == 0o700
