"""The tools against hostile input: forged owner records (terminal injection), configuration files that are
not regular files, damaged stats pages, closed pipes and signals; and the shared CLI plumbing."""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import child_environment
from nrt_lab.monitor import CoreSample, RuntimeSnapshot
from nrt_lab.monitor.report import memory_used, neuroncore_counters
from nrt_lab.tools import _cli, neuron_ls, neuron_monitor, neuron_top
from nrt_lab.tools.neuron_monitor import ConfigError, load_config

pytestmark = pytest.mark.instance("trn1.2xlarge")

HOSTILE = "evil\x1b[2J\x07\nline2\x9b31m\x7f"


# ---------------------------------------------------------------------------------------------- printable


def test_printable_escapes_every_control_character_and_keeps_unicode() -> None:
    assert _cli.printable("plain é ✓ 名前") == "plain é ✓ 名前"
    assert _cli.printable(HOSTILE) == "evil\\x1b[2J\\x07\\nline2\\x9b31m\\x7f"
    assert _cli.printable("a\tb\rc") == "a\\tb\\rc"
    escaped = _cli.printable("".join(chr(i) for i in range(0x20)) + "\x7f" + "".join(chr(i) for i in range(0x80, 0xa0)))
    assert all(0x20 <= ord(ch) < 0x7f for ch in escaped)


# ---------------------------------------------------------------------------------------------- forged records


@pytest.fixture
def forged_owner(machine_root: Path) -> Iterator[str]:
    """An owner record whose command and tag carry ESC, BEL, a newline, a C1 CSI and DEL; its liveness lock is
    held by the test process (as a live owner's would be)."""
    procs = machine_root / "procs"
    procs.mkdir(exist_ok=True, mode=0o700)
    stem = procs / f"{os.getpid()}.f0f0f0f0"
    record = {"pid": os.getpid(), "command": f"python {HOSTILE}", "runtime_version": "2.99.0.0\x1b[5m",
              "cores": [0], "tag": f"tag{HOSTILE}", "start_time": 1.0, "kernel_id": "", "lnc": 1, "extra": {}}
    fd = os.open(stem.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    stem.with_suffix(".json").write_text(json.dumps(record), encoding="utf-8")
    try:
        yield HOSTILE
    finally:
        os.close(fd)
        for suffix in (".json", ".lock"):
            stem.with_suffix(suffix).unlink(missing_ok=True)


def _assert_no_controls(text: str) -> None:
    lines = text.split("\n")
    for line in lines:
        assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0 for ch in line), repr(line)


@pytest.mark.parametrize("flags", [[], ["-w"], ["-a"], ["-w", "-a"], ["-t"]])
def test_neuron_ls_escapes_control_characters_of_records(forged_owner: str, flags: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert neuron_ls.main(flags) == 0
    out = capsys.readouterr().out
    _assert_no_controls(out)
    assert "\x1b" not in out and "\x07" not in out
    if flags != ["-t"]:
        assert "\\x1b[2J\\x07" in out  # the command is shown, escaped


def test_neuron_ls_json_keeps_the_record_as_json(forged_owner: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert neuron_ls.main(["-j"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out  # json.dumps escapes control characters itself
    commands = [p["command"] for d in json.loads(out) for p in d["neuron_processes"]]
    assert commands and commands[0].startswith("python evil\x1b[2J")


def test_neuron_top_once_escapes_control_characters_of_records(forged_owner: str) -> None:
    text = neuron_top.once_output(period=1.0, sleep=lambda _s: None)
    _assert_no_controls(text)
    assert "\x1b" not in text and "\x07" not in text
    assert "tagevil\\x1b[2J\\x07\\nline2" in text  # the tag, escaped, in the tab bar and the tree


def test_error_lines_are_escaped() -> None:
    err = io.StringIO()
    assert _cli.error("prog", "bad \x1b]0;title\x07 value", 3, err) == 3
    assert err.getvalue() == "prog: error: bad \\x1b]0;title\\x07 value\n"


# ---------------------------------------------------------------------------------------------- neuron-monitor -c


def test_config_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"config\.fifo is a FIFO; accepted: a regular JSON file of at most"):
        load_config(fifo)


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a device"), ("/dev/urandom", "a device"),
                                            ("DIR", "a directory")])
def test_config_that_is_not_a_regular_file_is_refused(tmp_path: Path, path: str, kind: str) -> None:
    target = str(tmp_path) if path == "DIR" else path
    with pytest.raises(ConfigError, match=f"is {kind}; accepted: a regular JSON file of at most"):
        load_config(target)


def test_config_too_large_or_too_deep_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (neuron_monitor.CONFIG_MAX_BYTES + 1))
    with pytest.raises(ConfigError, match=f"has {neuron_monitor.CONFIG_MAX_BYTES + 1} bytes"):
        load_config(big)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ConfigError, match="deep.json|nested too deeply"):
        load_config(deep)


def test_missing_and_unreadable_config_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.json does not exist"):
        load_config(tmp_path / "nope.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="bin.json cannot be read"):
        load_config(binary)


def test_neuron_monitor_fifo_config_exits_1_at_once(machine_root: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "monitor.fifo"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "nrt_lab.tools.neuron_monitor", "-c", str(fifo)],
                          env=child_environment(machine_root), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"neuron-monitor: error: configuration file {fifo} is a FIFO")
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------- damaged stats


def _runtime_with_core(core: int) -> RuntimeSnapshot:
    sample = CoreSample(core=core, device=0, utilization=1.0, flops_per_s=2.0, busy_ns=0, flops=0, inferences=0,
                        model_loads=0, memory={"tensors": 5}, memory_peak={}, outcomes={}, errors={}, status={},
                        running=False)
    good = CoreSample(core=1, device=0, utilization=0.0, flops_per_s=0.0, busy_ns=0, flops=0, inferences=0,
                      model_loads=0, memory={"tensors": 7}, memory_peak={}, outcomes={}, errors={}, status={},
                      running=False)
    return RuntimeSnapshot(pid=1, tag="t", command="c", runtime_version="2", kernel_id="", lnc=1, start_time=0.0,
                           cores=(sample, good), host_memory={}, models=(), execution_summary={}, error_summary={},
                           total_latency=None, device_latency=None, vcpu_user=0.0, vcpu_system=0.0, period=1.0)


def test_report_leaves_out_core_numbers_the_instance_lacks(machine_root: Path) -> None:
    from nrt_lab.hardware import get_instance

    view = get_instance("trn1.2xlarge")
    rt = _runtime_with_core(255)  # a flipped byte in the stats page
    group = neuroncore_counters(rt, view)
    assert list(group["neuroncores_in_use"]) == ["1"]
    assert "NeuronCore 255" in group["error"] and "valid: 0-1" in group["error"]
    memory = memory_used(rt, view)
    assert list(memory["neuron_runtime_used_bytes"]["usage_breakdown"]["neuroncore_memory_usage"]) == ["1"]
    assert memory["neuron_runtime_used_bytes"]["neuron_device"] == 7 and "NeuronCore 255" in memory["error"]


# ---------------------------------------------------------------------------------------------- plumbing


def test_bounded_int_refuses_huge_and_out_of_range_values() -> None:
    check = _cli.bounded_int("a count", 1)
    assert check("3") == 3
    for bad in ("0", "x", "9" * 5000, "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="accepted: an integer ≥ 1"):
            check(bad)


def test_positive_seconds_and_regex() -> None:
    assert _cli.positive_seconds("0.5") == 0.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="invalid period"):
            _cli.positive_seconds(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="invalid regular expression"):
        _cli.regex("(")


def test_neuron_ls_into_a_closed_pipe_exits_quietly(machine_root: Path) -> None:
    script = ("import os, sys\n"
              "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
              "from nrt_lab.tools.neuron_ls import main\n"
              "sys.exit(main(['-j']))\n")
    proc = subprocess.run([sys.executable, "-c", script], env=child_environment(machine_root),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_stop_on_signals_sets_the_event_and_restores_handlers() -> None:
    import signal

    before = signal.getsignal(signal.SIGTERM)
    seen: list[int] = []
    with _cli.stop_on_signals(seen.append) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
    assert seen == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) == before


def test_a_damaged_stats_page_does_not_stop_neuron_monitor(machine_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from nrt_lab.hardware import CatalogueError
    from nrt_lab.monitor import Monitor

    config = neuron_monitor.MonitorConfig(
        (neuron_monitor.RuntimeGroupConfig(None, (neuron_monitor.MetricGroup("neuroncore_counters", 1.0),)),), ())
    now = [0.0]
    log = io.StringIO()
    mon = neuron_monitor.NeuronMonitor(config, verbose=1, log=log, clock=lambda: now[0])
    mon.start()

    listing = Monitor.sample

    def damaged(self: Monitor, tag_filter: str | None = None, *, runtimes: bool = True) -> object:
        if not runtimes:  # listing owners reads no stats page
            return listing(self, tag_filter, runtimes=False)
        raise CatalogueError("NeuronCore 255 does not exist on trn1.2xlarge (valid: 0-1)")

    monkeypatch.setattr(Monitor, "sample", damaged)
    now[0] = 1.0
    report = mon.collect()
    assert report["neuron_runtime_data"] == [] and report["instance_info"]["instance_type"] == "trn1.2xlarge"
    assert "cannot read the runtimes: NeuronCore 255 does not exist" in log.getvalue()


@pytest.mark.parametrize("failure", ["nrt", "config", "os"])
def test_tools_turn_machine_errors_into_one_line(machine_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], failure: str) -> None:
    import nrt_lab.monitor
    from nrt_lab.errors import ConfigError as EnvConfigError
    from nrt_lab.errors import NrtError, NrtStatus

    exc: Exception = {"nrt": NrtError(NrtStatus.FAILURE, "bad machine"),
                      "config": EnvConfigError("NRT_LAB_ROOT", "x" * 10, "bad value", "a directory"),
                      "os": OSError(36, "File name too long")}[failure]

    def broken(*_args: object, **_kwargs: object) -> object:
        raise exc

    monkeypatch.setattr(nrt_lab.monitor, "read_listing", broken)
    monkeypatch.setattr(nrt_lab.monitor.Monitor, "sample", broken)
    assert neuron_ls.main([]) == 1
    assert neuron_top.main(["--once", "--period", "0.001"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("neuron-ls: error: ") and err[1].startswith("neuron-top: error: ")
