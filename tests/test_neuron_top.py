"""``neuron-top`` (docs/behaviour.md §7): the ``--once`` text and the textual UI driven headless, over real runtimes.

Every test provisions its own machine under ``tmp_path`` (``NRT_LAB_ROOT``, passed to the children too).
Runtimes are real child processes that ``nrt_lab.init()`` with their own ``NEURON_PROCESS_TAG`` and run a small
matmul NEFF (``busy``: in a loop; ``idle``: once, then sleep); they are killed at teardown.
The golden file ``tests/golden/neuron_top/once-trn1.2xlarge.txt`` has placeholders where values vary;
regenerate it with ``NRT_LAB_UPDATE_GOLDEN=1 pytest tests/test_neuron_top.py`` and review the diff.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

import nrt_lab
from nrt_lab.driver import open_machine
from nrt_lab.neff import GraphBuilder
from nrt_lab.runtime import RUNTIME_VERSION
from nrt_lab.tools.neuron_top import NeuronTopApp, build_parser, core_cells, main, once_output

GOLDEN = Path(__file__).parent / "golden" / "neuron_top"
UPDATE = os.environ.get("NRT_LAB_UPDATE_GOLDEN") == "1"
SECTIONS = ("NeuronCore v2 Utilization", "VCPU Utilization", "Memory Usage Summary", "Memory Usage Details")
ANSI = re.compile(r"\x1b[\[\]()]|[\x00-\x08\x0b-\x1f\x7f]")

_RUNNER = r"""# neuron-top test runtime
import signal, sys, time
signal.alarm(120)
import numpy as np
import nrt_lab
from nrt_lab.neff import GraphBuilder
rt = nrt_lab.init()
g = GraphBuilder(name="mm")
x = g.input("x", "float32", (128, 128))
g.output("y", g.op("matmul", [x, g.constant("w", np.full((128, 128), 1 / 128, dtype=np.float32))]))
model = nrt_lab.Model.load(g.build(uuid=b"t" * 16), 0)
inputs = {"x": np.ones((128, 128), dtype=np.float32)}
model.execute(inputs)
print("ready", flush=True)
while True:
    if sys.argv[1] == "busy":
        for _ in range(20):
            model.execute(inputs)
        time.sleep(0.005)
    else:
        time.sleep(0.5)
"""


# ---------------------------------------------------------------------------------------------- fixtures


def _provision(root: Path, monkeypatch: pytest.MonkeyPatch, instance: str, lnc: int | None = None) -> Path:
    for key in list(os.environ):
        if key.startswith(("NEURON", "NRT_LAB", "AWS_NEURON")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NRT_LAB_ROOT", str(root))
    nrt_lab.close()
    open_machine(root).create(instance, lnc)
    return root


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh trn1.2xlarge (two NeuronCores) under ``tmp_path``."""
    yield _provision(tmp_path / "state", monkeypatch, "trn1.2xlarge")
    nrt_lab.close()


Start = Callable[[str, int, str], subprocess.Popen[bytes]]


@pytest.fixture
def runtimes(machine: Path, tmp_path: Path) -> Iterator[Start]:
    """``start(tag, core, "busy"|"idle")``: a runtime process on ``core``; every one is SIGKILLed at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(tag: str, core: int, mode: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON", "NRT_LAB", "AWS_NEURON"))}
        env.update(NRT_LAB_ROOT=str(machine), NEURON_PROCESS_TAG=tag, NEURON_RT_VISIBLE_CORES=str(core),
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONDONTWRITEBYTECODE="1")
        logs.append(open(tmp_path / f"{tag}.stderr", "wb"))  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen([sys.executable, "-c", _RUNNER, mode], stdout=subprocess.PIPE, stderr=logs[-1],
                                env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()
    for log in logs:
        log.close()


def wait_ready(*procs: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Block until every runtime printed ``ready`` (it claimed its core and loaded and ran its model)."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"runtime {proc.pid} not ready in {timeout} s"
        assert proc.stdout.readline() == b"ready\n", f"runtime {proc.pid} failed (rc={proc.poll()})"


def start_pair(start: Start) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """``alpha`` busy on NeuronCore 0 and ``beta`` idle on NeuronCore 1."""
    alpha, beta = start("alpha", 0, "busy"), start("beta", 1, "idle")
    wait_ready(alpha, beta)
    return alpha, beta


# ---------------------------------------------------------------------------------------------- helpers


def core_values(text: str) -> dict[int, str]:
    """``{core: "12.34%"}`` from the bar cells of the NeuronCore section."""
    return {int(core): value for core, value in re.findall(r"nc(\d+)\s*\[[| ]*\]\s*(\S+)", text)}


def check_plain(text: str, version: str = "v2") -> list[str]:
    """The --once text is plain (no escape or control codes) and at most 80 columns; returns its lines."""
    assert not ANSI.search(text), repr(text)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    for section in (f"NeuronCore {version} Utilization", *SECTIONS[1:]):
        assert sum(section in line for line in lines) == 1, section
    return lines


def screen(app: NeuronTopApp) -> list[str]:
    """The headless screen, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def wait_for(pilot: object, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- --once


def test_once_idle_machine_shows_every_core_idle(machine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--once", "--period", "0.2"]) == 0
    out = capsys.readouterr().out
    lines = check_plain(out)
    assert lines[0].split() == ["neuron-top", RUNTIME_VERSION, "│", open_machine(machine).state().instance_id,
                                "│", "trn1.2xlarge"]
    assert core_values(out) == {0: "0.00%", 1: "0.00%"}
    assert "Total 0.00%" in out
    assert re.search(r"Runtime vCPU usage .* 0\.00% user +0\.00% system", out)
    assert lines[-1] == ">all<"
    assert " no runtime" in lines


def test_once_two_runtimes(runtimes: Start, capsys: pytest.CaptureFixture[str]) -> None:
    alpha, beta = start_pair(runtimes)
    assert main(["--once", "--period", "0.5"]) == 0
    out = capsys.readouterr().out
    lines = check_plain(out)
    values = core_values(out)
    assert float(values[0].rstrip("%")) > 0, out  # alpha keeps NeuronCore 0 busy
    assert values[1] == "0.00%", out  # beta only loaded its model
    tab_bar = lines[-1].split()
    assert tab_bar[0] == ">all<" and sorted(tab_bar[1:]) == ["alpha", "beta"]  # runtimes in start order
    assert f"Runtime alpha (pid {alpha.pid})" in out and f"Runtime beta (pid {beta.pid})" in out
    assert re.search(r"Model Code +192\.0MB", out)  # two cores' microcode in the device summary
    assert out.count("1001 mm") == 2
    # diagnose()'s findings for this shell (the same as nrt-lab doctor's): an app started here would find every
    # core taken, and the section names who holds them.
    findings = " ".join(out[out.index("Findings"):].split())  # lines wrapped at 80 columns
    assert "WARNING nrt_lab.init() in this process would fail" in findings
    assert f"pid {alpha.pid} (tag alpha" in findings and f"pid {beta.pid} (tag beta" in findings

    assert main(["--once", "--period", "0.1", "--tag", "^be"]) == 0
    out = capsys.readouterr().out
    check_plain(out)
    runtimes_part = out[:out.index("Findings")]  # the findings are about the machine, not the filtered tab
    assert "alpha" not in runtimes_part and f"Runtime beta (pid {beta.pid})" in out
    assert out.splitlines()[-1].split() == [">all<", "beta"]


def test_once_golden(machine: Path) -> None:
    nrt_lab.init(env={**os.environ, "NEURON_PROCESS_TAG": "golden", "NEURON_RT_VISIBLE_CORES": "1"})
    g = GraphBuilder(name="plus_one")
    x = g.input("x", "float32", (256, 256))
    g.output("y", g.op("add", [x, g.constant("one", np.ones((256, 256), dtype=np.float32))]))
    nrt_lab.Model.load(g.build(uuid=b"g" * 16), 0)
    text = once_output(period=0.1)
    check_plain(text)
    text = text.replace(RUNTIME_VERSION, "<VERSION>").replace(f"pid {os.getpid()}", "pid <PID>")
    text = re.sub(r"\(pid <PID>\) +", "(pid <PID>)  ", text)  # the padding after it depends on the pid's digits
    text = re.sub(r"i-[0-9a-f]{17}", "i-<INSTANCE-ID>", text)
    text = re.sub(r"(vCPU usage\s+)\[[| ]*\]\s+\S+ user\s+\S+ system", r"\1[<BAR>] <PCT> user <PCT> system", text)
    path = GOLDEN / "once-trn1.2xlarge.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args([]).period == 1.0
    for bad in (["--period", "0"], ["--period", "x"], ["--tag", "("]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(bad)
        assert info.value.code == 2
    assert "invalid regular expression" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the UI


def test_tui_tabs_units_tree_and_quit(runtimes: Start) -> None:
    alpha, beta = start_pair(runtimes)
    app = NeuronTopApp(period=0.2)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.snapshot is not None and len(app.snapshot.runtimes) == 2)
            await pilot.pause(0.05)
            rows = screen(app)
            labels = [tab.label for tab in app.tabs]  # all, then the runtimes in start order
            assert labels[0] == "all" and sorted(labels[1:]) == ["alpha", "beta"]
            assert rows[-1].split()[:3] == [">all<", *labels[1:]]
            assert rows[0].split()[:2] == ["neuron-top", RUNTIME_VERSION] and "trn1.2xlarge" in rows[0]
            for section in SECTIONS:
                assert any(section in row for row in rows), section
            assert "nc0" in rows[2] and "nc1" in rows[2]

            # a busy runtime's core shows a non-zero rate in its own tab
            position = labels.index("alpha")
            await pilot.press(str(position + 1))
            assert app.tabs[app.active_index].label == "alpha"
            await wait_for(pilot, lambda: app.snapshot is not None and app.tabs[app.active_index].runtime
                           is not None and core_cells(app.snapshot, app.tabs[app.active_index].runtime)[1][0]
                           .utilization > 0)
            await pilot.pause(0.05)
            rows = screen(app)
            assert ">alpha<" in rows[-1].split() and "all" in rows[-1].split()
            assert "nc0" in rows[2] and "nc1" not in rows[2]
            assert any(f"Runtime alpha (pid {alpha.pid})" in row for row in rows)
            assert not any(f"(pid {beta.pid})" in row for row in rows)

            # d / a move right / left and wrap; 1-9 jump (a missing tab is ignored)
            for key in ("d", "d", "d", "a", "a", "3", "9", "2", "1"):
                if key == "d":
                    position = (position + 1) % 3
                elif key == "a":
                    position = (position - 1) % 3
                elif int(key) <= 3:
                    position = int(key) - 1
                await pilot.press(key)
                assert app.tabs[app.active_index].label == labels[position], key
            await pilot.pause(0.05)
            assert screen(app)[-1].startswith(">all<")

            # F toggles percent and FLOPS
            await pilot.press("F")
            await pilot.pause(0.05)
            assert app.show_flops and "TFLOPS" in screen(app)[1] and "F" in screen(app)[2]
            await pilot.press("F")
            await pilot.pause(0.05)
            assert not app.show_flops and "%" in screen(app)[1]

            # x expands the whole tree (models and their categories appear), x again collapses it
            tree = app.query_one("#tree")
            await pilot.press("x")
            await pilot.pause(0.05)
            expandable = [n for n in _nodes(tree.root) if n is not tree.root and n.allow_expand]
            assert expandable and all(n.is_expanded for n in expandable)
            assert any("1001 mm" in row for row in screen(app))
            await pilot.press("x")
            await pilot.pause(0.05)
            assert not any(n.is_expanded for n in _nodes(tree.root) if n is not tree.root and n.allow_expand)
            # arrow keys: up/down move, right unfolds, left folds (or goes to the parent); the cursor and the
            # folding survive new samples
            tree.move_cursor_to_line(0)
            await pilot.press("right")
            assert tree.cursor_node.label.plain.startswith("Runtime") and tree.cursor_node.is_expanded
            await pilot.press("down")
            assert tree.cursor_line == 1 and tree.cursor_node.label.plain.startswith("NeuronCore")
            samples = app.samples
            await wait_for(pilot, lambda: app.samples >= samples + 2)
            assert tree.cursor_line == 1 and tree.root.children[0].is_expanded
            await pilot.press("left")
            assert tree.cursor_line == 0
            await pilot.press("left")
            assert not tree.cursor_node.is_expanded
            await pilot.press("down")
            assert tree.cursor_line == 1 and tree.cursor_node.label.plain.startswith("Runtime")

            await pilot.press("q")
            await pilot.pause(0.05)
        assert app.return_code == 0

    asyncio.run(scenario())


def _nodes(node: object) -> Iterator[object]:
    yield node
    for child in node.children:  # type: ignore[attr-defined]
        yield from _nodes(child)


@pytest.mark.parametrize(("instance", "lnc", "version", "cores", "first_rows"), [
    ("trn1.32xlarge", None, "v2", 32, ["nc0-11", "nc12-23", "nc24-31"]),
    ("trn2.48xlarge", 1, "v3", 128, ["nc0-31", "nc32-63", "nc64-95", "nc96-127"]),
])
def test_tui_fits_80x24_and_draws_from_cached_snapshot(
    instance: str, lnc: int | None, version: str, cores: int, first_rows: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _provision(tmp_path / "state", monkeypatch, instance, lnc)
    once = once_output(period=0.05)  # the plain form lists every core, four a row
    assert len(check_plain(once, version)) == 17 + cores // 4
    assert core_values(once) == dict.fromkeys(range(cores), "0.00%")
    app = NeuronTopApp(period=3600)  # one sample only: every redraw below comes from the cached snapshot
    calls = 0
    sample = app.monitor.sample

    def counting(tag_filter: str | None = None) -> object:
        nonlocal calls
        calls += 1
        return sample(tag_filter)

    app.monitor.sample = counting  # type: ignore[method-assign, assignment]

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.snapshot is not None)
            await pilot.pause(0.05)
            rows = screen(app)
            assert f"NeuronCore {version} Utilization" in rows[1]
            assert [row.split()[0] for row in rows[2:2 + len(first_rows)]] == first_rows
            assert "VCPU Utilization" in rows[2 + len(first_rows)]
            for section in SECTIONS[1:]:
                assert any(section in row for row in rows), section
            assert rows[-1].startswith(">all<")
            await pilot.press("F")
            await pilot.pause(0.05)
            assert "TFLOPS" in screen(app)[1]
            for key in ("d", "x", "x", "F"):
                await pilot.press(key)
            await pilot.pause(0.05)
            assert screen(app) == rows
            assert calls == 1
            await pilot.press("q")

    asyncio.run(scenario())


def test_sigterm_quits_the_ui_cleanly(machine: Path) -> None:
    """SIGTERM ends the UI like ``q``: status 0, the terminal restored, the device-user record withdrawn."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-m", "nrt_lab.tools.neuron_top", "--period", "0.5"])
    output = b""
    try:
        deadline = time.monotonic() + 60
        while b"neuron-top" not in output:  # the title bar is drawn: handlers are installed
            assert time.monotonic() < deadline, output[-500:]
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                output += os.read(fd, 65536)
        os.kill(pid, signal.SIGTERM)
        while True:
            ready, _, _ = select.select([fd], [], [], 30.0)
            try:
                chunk = os.read(fd, 65536) if ready else b""
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert b"Traceback" not in output
    assert not list((machine / "procs").glob("*.json"))  # the record of neuron-top is gone
