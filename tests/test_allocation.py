"""NeuronCore allocation between processes (docs/behaviour.md §0, §1, §2): races, busy lines, VISIBLE syntax, LNC mixes."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

import nrt_lab
from conftest import (
    OwnerFactory,
    OwnerProcess,
    assert_single_log_line,
    busy_message,
    race,
    start_owners,
)
from nrt_lab import NrtError, NrtStatus
from nrt_lab.driver import Machine

BUSY_RE = re.compile(r"^NeuronCore\(s\) not available - Requested:(\S+) Available:(\d+)$")


def init_fails(capsys: pytest.CaptureFixture[str], env: Mapping[str, str] | None = None) -> tuple[NrtError, str]:
    """In-process init that must fail; returns the error and what was logged on stderr."""
    capsys.readouterr()
    environment = {"NRT_LAB_ROOT": os.environ["NRT_LAB_ROOT"], **(env or {})}
    with pytest.raises(NrtError) as info:
        nrt_lab.init(env=environment)
    return info.value, capsys.readouterr().err


def assert_busy_in_process(capsys: pytest.CaptureFixture[str], env: Mapping[str, str], requested: str | int,
                           available: int) -> None:
    error, err = init_fails(capsys, env)
    expected = busy_message(requested, available)
    assert error.status == NrtStatus.FAILURE
    assert error.message == expected
    assert_single_log_line(err, "ERROR", "NRT", "nrt_allocate_neuron_cores", expected, pid=os.getpid())


def claim(env: Mapping[str, str] | None = None) -> tuple[int, ...]:
    """In-process init that must succeed; returns the cores and closes again."""
    environment = {"NRT_LAB_ROOT": os.environ["NRT_LAB_ROOT"], **(env or {})}
    with nrt_lab.init(env=environment) as runtime:
        return runtime.cores


def assert_contiguous(cores: tuple[int, ...]) -> None:
    assert list(cores) == list(range(cores[0], cores[0] + len(cores))), cores


def assert_owner_busy(owner: OwnerProcess, requested: str | int, available: int) -> None:
    """A child's init failed with the busy line, as NrtError FAILURE and as one ERROR line on its stderr."""
    result = owner.result()
    expected = busy_message(requested, available)
    assert result["ok"] is False, result
    assert result["status"] == NrtStatus.FAILURE
    assert result["message"] == expected
    line = assert_single_log_line(owner.stderr(), "ERROR", "NRT", "nrt_allocate_neuron_cores", expected,
                                  pid=owner.pid)
    assert line.tid == owner.pid  # the main thread of the child logged it


def owner_map(machine: Machine) -> dict[int, tuple[int, ...]]:
    return {record.pid: record.cores for record in machine.owners()}


# ------------------------------------------------------------------------------------------------ races


def test_num_cores_race_twelve_processes_on_32_cores(owner_process: OwnerFactory, machine: Machine) -> None:
    for round_number in range(3):
        owners = race(owner_process, [{"NEURON_RT_NUM_CORES": "3"}] * 12)
        winners = [o for o in owners if o.ok]
        losers = [o for o in owners if not o.ok]
        assert len(winners) == 10, (round_number, owners)
        claimed: list[int] = []
        for owner in winners:
            assert len(owner.cores) == 3
            assert_contiguous(owner.cores)
            claimed.extend(owner.cores)
        # Disjoint, and first fit packs them at the bottom: exactly nc0-nc29.
        assert sorted(claimed) == list(range(30))
        for owner in losers:
            assert_owner_busy(owner, 3, 2)
        assert owner_map(machine) == {o.pid: o.cores for o in winners}
        # Release differently each round: clean exit, SIGKILL, clean exit; nothing stale is left behind.
        for owner in owners:
            if round_number == 1:
                owner.kill()
            else:
                assert owner.exit() == 0
        assert machine.owners() == []


MIXED = [
    {"NEURON_RT_VISIBLE_CORES": "0-7"},
    {"NEURON_RT_VISIBLE_CORES": "4-11"},
    {"NEURON_RT_VISIBLE_CORES": "8-15"},
    {"NEURON_RT_VISIBLE_CORES": "14,13,12"},
    {"NEURON_RT_VISIBLE_CORES": "16-23"},
    {"NEURON_RT_VISIBLE_CORES": "20-27"},
    {"NEURON_RT_VISIBLE_CORES": "24-31", "NEURON_RT_NUM_CORES": "2"},
    {"NEURON_RT_NUM_CORES": "4"},
    {"NEURON_RT_NUM_CORES": "4"},
    {"NEURON_RT_NUM_CORES": "5"},
    {},
]


def _requested(env: Mapping[str, str]) -> str:
    if "NEURON_RT_VISIBLE_CORES" in env:
        ids = sorted({int(i) for part in env["NEURON_RT_VISIBLE_CORES"].split(",")
                      for i in (range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))})
        return f"nc{ids[0]}-nc{ids[-1]}"
    if "NEURON_RT_NUM_CORES" in env:
        return env["NEURON_RT_NUM_CORES"]
    return "nc0-nc31"


def _largest_run(free: set[int], total: int) -> int:
    best = run = 0
    for core in range(total):
        run = run + 1 if core in free else 0
        best = max(best, run)
    return best


@pytest.mark.parametrize("round_number", range(2))
def test_mixed_visible_and_num_race_never_shares_a_core(owner_process: OwnerFactory, machine: Machine,
                                                        round_number: int) -> None:
    owners = race(owner_process, MIXED)
    winners = [o for o in owners if o.ok]
    assert winners, owners
    seen: dict[int, int] = {}
    for owner in winners:
        assert_contiguous(owner.cores)
        requested = _requested(owner.env)
        if requested.startswith("nc"):
            assert f"nc{owner.cores[0]}-nc{owner.cores[-1]}" == requested
        else:
            assert len(owner.cores) == int(requested)
        for core in owner.cores:
            assert core not in seen, f"core {core} owned by {seen[core]} and {owner.pid}"
            seen[core] = owner.pid
    # The driver's view agrees with what the processes were told, and no two records share a core.
    records = machine.owners()
    assert {r.pid: r.cores for r in records} == {o.pid: o.cores for o in winners}
    record_cores = [c for r in records for c in r.cores]
    assert len(record_cores) == len(set(record_cores))
    # Nobody released anything, so the free set only shrank during the race: it is now at its smallest.
    free_now = set(range(32)) - set(seen)
    for owner in owners:
        if owner.ok:
            continue
        result = owner.result()
        assert result["status"] == NrtStatus.FAILURE
        match = BUSY_RE.match(result["message"])
        assert match, result
        assert match[1] == _requested(owner.env), (owner.env, result)
        available = int(match[2])
        assert available >= _largest_run(free_now, 32)
        if match[1].startswith("nc"):
            first, last = (int(x) for x in match[1].replace("nc", "").split("-"))
            assert set(range(first, last + 1)) & set(seen), "refused although every requested core stayed free"
        else:
            assert available < int(match[1]), "refused although a large enough free run existed"
            assert _largest_run(free_now, 32) < int(match[1])
        assert_single_log_line(owner.stderr(), "ERROR", "NRT", "nrt_allocate_neuron_cores", result["message"])


def test_threads_of_one_process_racing_init_share_one_runtime(machine_root: Path, machine: Machine) -> None:
    results: list[nrt_lab.Runtime] = []
    guard = threading.Lock()
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        runtime = nrt_lab.init()
        with guard:
            results.append(runtime)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 6
    assert all(r is results[0] for r in results)
    assert results[0].cores == tuple(range(32))
    assert [r.pid for r in machine.owners()] == [os.getpid()]
    nrt_lab.close()
    assert machine.owners() == []


# ------------------------------------------------------------------------------------------------ release


def test_sigkill_releases_cores_at_once(owner_process: OwnerFactory, machine: Machine,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    victim = owner_process({"NEURON_RT_VISIBLE_CORES": "8-15"})
    assert victim.cores == tuple(range(8, 16))
    assert_busy_in_process(capsys, {"NEURON_RT_VISIBLE_CORES": "10"}, "nc10-nc10", 16)
    victim.kill()
    # No waiting beyond the reaping done by kill(): the kernel dropped the flocks with the process.
    assert machine.owners() == []
    successor = owner_process({"NEURON_RT_VISIBLE_CORES": "8-15"})
    assert successor.cores == tuple(range(8, 16))
    assert owner_map(machine) == {successor.pid: tuple(range(8, 16))}
    assert_busy_in_process(capsys, {}, "nc0-nc31", 16)
    successor.kill()
    assert claim() == tuple(range(32))


def test_sigkilled_num_cores_owner_is_replaced_by_the_same_cores(owner_process: OwnerFactory,
                                                                machine: Machine) -> None:
    first = owner_process({"NEURON_RT_NUM_CORES": "3"})
    assert first.cores == (0, 1, 2)
    neighbour = owner_process({"NEURON_RT_NUM_CORES": "3"})
    assert neighbour.cores == (3, 4, 5)
    first.kill()
    again = owner_process({"NEURON_RT_NUM_CORES": "3"})
    assert again.cores == (0, 1, 2)
    assert owner_map(machine) == {neighbour.pid: (3, 4, 5), again.pid: (0, 1, 2)}


def test_closed_runtime_releases_cores_while_process_lives(owner_process: OwnerFactory, machine: Machine) -> None:
    owner = owner_process({"NEURON_RT_VISIBLE_CORES": "0-3"})
    assert owner.cores == (0, 1, 2, 3)
    owner.close_runtime()
    assert machine.owners() == []
    assert claim({"NEURON_RT_VISIBLE_CORES": "0-3"}) == (0, 1, 2, 3)


# ------------------------------------------------------------------------------------------------ busy line


def test_default_claims_every_core_and_others_get_the_busy_line(machine_root: Path, machine: Machine,
                                                                owner_process: OwnerFactory) -> None:
    runtime = nrt_lab.init()
    assert runtime.cores == tuple(range(32))
    plain, visible, num = start_owners(owner_process, [{}, {"NEURON_RT_VISIBLE_CORES": "5"},
                                                       {"NEURON_RT_NUM_CORES": "1"}])
    assert_owner_busy(plain, "nc0-nc31", 0)
    assert_owner_busy(visible, "nc5-nc5", 0)
    assert_owner_busy(num, 1, 0)
    assert owner_map(machine) == {os.getpid(): tuple(range(32))}


def test_busy_line_layout_in_process(owner_process: OwnerFactory, capsys: pytest.CaptureFixture[str]) -> None:
    assert owner_process({"NEURON_RT_VISIBLE_CORES": "5-6"}).cores == (5, 6)
    error, err = init_fails(capsys)
    expected = busy_message("nc0-nc31", 25)
    assert str(error) == f"NRT Error NRT_FAILURE(1): {expected}"
    line = assert_single_log_line(err, "ERROR", "NRT", "nrt_allocate_neuron_cores", expected, pid=os.getpid())
    assert line.tid == threading.get_native_id()
    # Byte-level layout: "<stamp> <pid:5>:<tid:-5> ERROR   NRT:<function padded to 40><message>".
    stamp = line.raw[:27]
    assert line.raw == (f"{stamp} {os.getpid():5d}:{threading.get_native_id():<5d} ERROR   NRT:"
                        f"{'nrt_allocate_neuron_cores':<40}{expected}")
    assert re.fullmatch(r"\d{4}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d\d \d\d:\d\d:\d\d\.\d{6}", stamp)


def test_available_is_the_largest_free_contiguous_run(owner_process: OwnerFactory, machine: Machine,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Fragment the 32 cores: owners at 3, 10-11, 20 leave free runs 0-2 (3), 4-9 (6), 12-19 (8), 21-31 (11).
    owners = start_owners(owner_process, [{"NEURON_RT_VISIBLE_CORES": "3"}, {"NEURON_RT_VISIBLE_CORES": "10-11"},
                                          {"NEURON_RT_VISIBLE_CORES": "20"}])
    assert [o.cores for o in owners] == [(3,), (10, 11), (20,)]
    assert_busy_in_process(capsys, {}, "nc0-nc31", 11)
    assert_busy_in_process(capsys, {"NEURON_RT_NUM_CORES": "12"}, 12, 11)
    assert_busy_in_process(capsys, {"NEURON_RT_VISIBLE_CORES": "2-4"}, "nc2-nc4", 11)
    assert_busy_in_process(capsys, {"NEURON_RT_VISIBLE_CORES": "11"}, "nc11-nc11", 11)
    # First fit: the lowest-index run that is long enough, not the best fit.
    assert claim({"NEURON_RT_NUM_CORES": "7"}) == tuple(range(12, 19))
    assert claim({"NEURON_RT_NUM_CORES": "6"}) == tuple(range(4, 10))
    assert claim({"NEURON_RT_NUM_CORES": "2"}) == (0, 1)
    assert claim({"NEURON_RT_NUM_CORES": "11"}) == tuple(range(21, 32))
    tail = owner_process({"NEURON_RT_NUM_CORES": "11"})
    assert tail.cores == tuple(range(21, 32))
    assert_busy_in_process(capsys, {"NEURON_RT_NUM_CORES": "9"}, 9, 8)
    assert owner_map(machine) == {o.pid: o.cores for o in [*owners, tail]}


@pytest.mark.instance("inf1.6xlarge")
def test_spec_example_inf1_6xlarge_fits_five_num_cores_3(owner_process: OwnerFactory, machine: Machine,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert machine.instance().total_cores == 16
    owners = race(owner_process, [{"NEURON_RT_NUM_CORES": "3"}] * 5)
    assert sorted(o.cores for o in owners) == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11), (12, 13, 14)]
    assert_busy_in_process(capsys, {"NEURON_RT_NUM_CORES": "3"}, 3, 1)
    assert claim({"NEURON_RT_NUM_CORES": "1"}) == (15,)


def test_num_cores_larger_than_the_machine(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_busy_in_process(capsys, {"NEURON_RT_NUM_CORES": "33"}, 33, 32)
    assert claim({"NEURON_RT_NUM_CORES": "0"}) == tuple(range(32))  # 0 means all
    assert claim({"NEURON_RT_NUM_CORES": "32"}) == tuple(range(32))


# ------------------------------------------------------------------------------------------------ VISIBLE syntax


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", (0,)),
        ("0-2", (0, 1, 2)),
        ("3,4,5,6", (3, 4, 5, 6)),
        ("3-5,6", (3, 4, 5, 6)),
        ("6,5,4", (4, 5, 6)),
        ("1,1,2", (1, 2)),
        ("0-2,1-3", (0, 1, 2, 3)),
        (" 1, 2 ,3 ", (1, 2, 3)),
        ("31", (31,)),
        ("0-31", tuple(range(32))),
    ],
)
def test_visible_cores_syntax(machine_root: Path, machine: Machine, value: str, expected: tuple[int, ...]) -> None:
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VISIBLE_CORES": value}) as runtime:
        assert runtime.cores == expected
        assert runtime.visible_nc_count == len(expected)
        assert runtime.total_nc_count == 32
        assert runtime.global_core(0) == expected[0]  # process-relative index 0 is the first owned core
        assert owner_map(machine) == {os.getpid(): expected}
    assert machine.owners() == []


@pytest.mark.parametrize("value", ["3,5,6", "0-1,3", "7,5"])
def test_visible_cores_not_contiguous(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str],
                                      value: str) -> None:
    error, err = init_fails(capsys, {"NEURON_RT_VISIBLE_CORES": value})
    assert error.status == NrtStatus.FAILURE
    assert error.message.startswith("Neuron cores are not contiguous")
    assert_single_log_line(err, "ERROR", "NRT", "nrt_allocate_neuron_cores", "Neuron cores are not contiguous")
    assert machine.owners() == []
    assert claim() == tuple(range(32))


@pytest.mark.parametrize("value", ["", "   "])
def test_visible_cores_empty_means_no_core(machine_root: Path, machine: Machine,
                                           capsys: pytest.CaptureFixture[str], value: str) -> None:
    error, err = init_fails(capsys, {"NEURON_RT_VISIBLE_CORES": value})
    assert error.status == NrtStatus.FAILURE
    line = assert_single_log_line(err, "ERROR", "NRT", "nrt_allocate_neuron_cores")
    assert "NEURON_RT_VISIBLE_CORES" in line.message and "empty" in line.message
    assert machine.owners() == []
    assert claim() == tuple(range(32))


def test_visible_wins_over_num_cores(machine_root: Path) -> None:
    assert claim({"NEURON_RT_VISIBLE_CORES": "4-5", "NEURON_RT_NUM_CORES": "3"}) == (4, 5)
    assert claim({"NEURON_RT_VISIBLE_CORES": "9", "NEURON_RT_NUM_CORES": "0"}) == (9,)


def test_visible_ids_are_instance_global_and_indices_process_relative(machine_root: Path) -> None:
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VISIBLE_CORES": "3,4"}) as runtime:
        assert (runtime.global_core(0), runtime.global_core(1)) == (3, 4)
        with pytest.raises(NrtError) as info:
            runtime.global_core(2)
        assert info.value.status == NrtStatus.INVALID


# ------------------------------------------------------------------------------------------------ trn2 LNC


@pytest.mark.instance("trn2.48xlarge")
def test_trn2_core_counts_follow_the_logical_nc_config(machine_root: Path, machine: Machine) -> None:
    assert machine.instance().lnc == 2
    assert nrt_lab.total_nc_count() == 64
    assert nrt_lab.total_nc_count(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_LOGICAL_NC_CONFIG": "1"}) == 128
    assert nrt_lab.visible_nc_count(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_LOGICAL_NC_CONFIG": "1"}) == 128
    with nrt_lab.init() as runtime:
        assert (runtime.lnc, len(runtime.cores), runtime.total_nc_count) == (2, 64, 64)
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_LOGICAL_NC_CONFIG": "1"}) as runtime:
        assert (runtime.lnc, runtime.cores, runtime.total_nc_count) == (1, tuple(range(128)), 128)
        assert [(o.cores, o.lnc) for o in machine.owners()] == [(tuple(range(128)), 1)]
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VIRTUAL_CORE_SIZE": "1"}) as runtime:
        assert runtime.lnc == 1 and len(runtime.cores) == 128


@pytest.mark.instance("trn2.48xlarge", lnc=1)
def test_trn2_provisioned_with_lnc_1(machine_root: Path, machine: Machine) -> None:
    assert nrt_lab.total_nc_count() == 128
    assert claim({"NEURON_LOGICAL_NC_CONFIG": "2", "NEURON_RT_VISIBLE_CORES": "63"}) == (63,)
    assert claim({"NEURON_RT_VISIBLE_CORES": "127"}) == (127,)


@pytest.mark.instance("trn2.48xlarge")
def test_trn2_lnc_1_owners_make_lnc_2_cores_busy(owner_process: OwnerFactory, machine: Machine,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lnc1 = {"NEURON_LOGICAL_NC_CONFIG": "1"}
    pair, single = start_owners(owner_process, [{**lnc1, "NEURON_RT_VISIBLE_CORES": "0-1"},
                                                {**lnc1, "NEURON_RT_VISIBLE_CORES": "5"}])
    assert (pair.cores, pair.result()["lnc"]) == ((0, 1), 1)
    assert single.cores == (5,)
    # Physical 0,1 = logical-2 core 0; physical 5 = logical-2 core 2: free LNC=2 runs are {1} and 3..63.
    assert_busy_in_process(capsys, {"NEURON_RT_VISIBLE_CORES": "0"}, "nc0-nc0", 61)
    assert_busy_in_process(capsys, {"NEURON_RT_VISIBLE_CORES": "1-2"}, "nc1-nc2", 61)
    assert claim({"NEURON_RT_NUM_CORES": "2"}) == (3, 4)
    assert claim({"NEURON_RT_NUM_CORES": "1"}) == (1,)
    view = {o.pid: o.cores for o in machine.owners_in_machine_view()}
    assert view == {pair.pid: (0,), single.pid: (2,)}
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine.root), "NEURON_RT_VISIBLE_CORES": "1"}) as runtime:
        assert runtime.cores == (1,)  # physical 2 and 3
        other = owner_process({**lnc1, "NEURON_RT_VISIBLE_CORES": "3"})
        # LNC=1 view: physical 0-3 and 5 are owned, the largest free run is 6..127.
        assert_owner_busy(other, "nc3-nc3", 122)
