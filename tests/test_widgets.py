"""Scenario tests of nrt_lab.widgets (no browser): widget state against a real emulated machine.

Owners are real subprocesses that call ``nrt_lab.init()`` (some with a fake Jupyter kernel id, one running a
busy workload); they are killed at teardown. What the browser would receive is checked through the widget's
comm (``record_messages``): deltas only, at most 10 per second, and applying them to the first full state
rebuilds the current full state. Nothing here sleeps: rates and periods are checked with a fake clock and
:meth:`Sampler.tick`, the thread with :meth:`Sampler.wait_for`, and a busy owner reports its progress on its
stdout so a test waits for executions, not for time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import comm
import pytest
import traitlets
from IPython.core.formatters import DisplayFormatter

import nrt_lab
from conftest import FakeClock, child_environment
from nrt_lab.driver import Machine, open_machine, parse_driver_version
from nrt_lab.runtime import ConfigError, RuntimeConfig, driver_gate
from nrt_lab.widgets import (
    MIN_PERIOD,
    ActionRefused,
    CoreMap,
    Dashboard,
    DriverStatus,
    Sampler,
    TopView,
    owner_color,
    record_messages,
    show,
)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"

# No kernel runs here, so widgets get the comm package's DummyComm, which sends nowhere (record_messages still
# sees every message). Importing ipykernel's kernel app (some pytest plugins do) replaces the comm factory with
# one whose comms send nothing without a kernel: let that import happen now, then put the defaults back.
with contextlib.suppress(ImportError):
    import ipykernel.kernelapp  # noqa: F401
comm.create_comm = comm._create_comm
comm.get_comm_manager = comm._get_comm_manager

_OWNER = r"""
import json, os, signal, sys, threading, time, types
signal.alarm(120)
if os.environ.get("FAKE_KERNEL_ID"):  # pose as a running Jupyter kernel, as nrt_lab.runtime looks for one
    class IPKernelApp:
        connection_file = "/run/jupyter/kernel-" + os.environ["FAKE_KERNEL_ID"] + ".json"
        @classmethod
        def initialized(cls):
            return True
        @classmethod
        def instance(cls):
            return cls()
    fake = types.ModuleType("ipykernel.kernelapp")
    fake.IPKernelApp = IPKernelApp
    sys.modules["ipykernel.kernelapp"] = fake
import nrt_lab
rt = nrt_lab.init()
busy = int(os.environ.get("BUSY_CORES", "0"))
if busy:
    from nrt_lab.models import build_mlp, example_inputs
    neff, _ = build_mlp()
    inputs = example_inputs("mlp")
    report = threading.Lock()
    def loop(core, model):
        done = 0
        while True:
            model.execute(inputs)
            done += 1
            if done % 5 == 0:  # progress, so the test waits for executions rather than for time
                with report:
                    print(json.dumps({"core": core, "done": done}), flush=True)
            time.sleep(0.004)
    models = [nrt_lab.Model.load(neff, core=i) for i in range(busy)]
print(json.dumps({"pid": os.getpid(), "cores": list(rt.cores), "tag": rt.tag}), flush=True)
for i in range(busy):
    threading.Thread(target=loop, args=(i, models[i]), daemon=True).start()
sys.stdin.read()
"""


@dataclass
class Owner:
    """A child process holding NeuronCores."""

    proc: subprocess.Popen[str]
    pid: int
    cores: tuple[int, ...]
    tag: str

    def wait_executions(self, more: int, cores: int) -> None:
        """Block until each of the first ``cores`` busy cores reported ``more`` executions beyond what was read."""
        assert self.proc.stdout is not None
        done = getattr(self, "_done", {})
        target = {core: done.get(core, 0) + more for core in range(cores)}
        while any(done.get(core, 0) < n for core, n in target.items()):
            line = self.proc.stdout.readline()
            assert line, f"busy owner {self.pid} stopped reporting"
            report = json.loads(line)
            done[report["core"]] = report["done"]
        self._done = done




Spawn = Callable[..., list[Owner]]


def _start(root: Path, envs: list[Mapping[str, str]], started: list[subprocess.Popen[str]]) -> list[Owner]:
    procs = []
    for env in envs:
        proc = subprocess.Popen([sys.executable, "-c", _OWNER], env=child_environment(root, env), text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(proc)
        procs.append(proc)
    owners = []
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"owner {proc.pid} failed: {proc.stderr.read() if proc.stderr else ''}"
        data = json.loads(line)
        owners.append(Owner(proc, data["pid"], tuple(data["cores"]), data["tag"]))
    return owners


def _kill(started: list[subprocess.Popen[str]]) -> None:
    for proc in started:
        if proc.poll() is None:
            proc.kill()
    for proc in started:
        proc.wait(timeout=15)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(machine_root: Path) -> Iterator[Spawn]:
    """``spawn(env, env, ...)``: start owner processes on ``machine_root`` and wait until they hold cores."""
    started: list[subprocess.Popen[str]] = []
    yield lambda *envs: _start(machine_root, list(envs), started)
    _kill(started)


@pytest.fixture
def widgets() -> Iterator[list[Any]]:
    """Widgets to close at teardown, whatever happened."""
    made: list[Any] = []
    yield made
    for widget in made:
        widget.close()


@pytest.fixture(scope="module")
def busy_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Owner]]:
    """A trn1.32xlarge with one owner (tag ``busy``, 4 cores) executing a model on 2 of them."""
    root = tmp_path_factory.mktemp("busy") / "state"
    open_machine(root).create("trn1.32xlarge")
    started: list[subprocess.Popen[str]] = []
    try:
        owner = _start(root, [{"NEURON_RT_NUM_CORES": "4", "NEURON_PROCESS_TAG": "busy", "BUSY_CORES": "2"}],
                       started)[0]
        owner.wait_executions(5, cores=2)
        yield root, owner
    finally:
        _kill(started)


def _ids(widget: DriverStatus) -> dict[str, dict[str, str]]:
    return {f["id"]: f for f in widget.findings()}


# ============================================================================================== CoreMap


def test_core_map_owners_colours_kernel_ids_and_this_kernel(machine: Machine, spawn: Spawn, widgets: list[Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, beta = spawn({"NEURON_RT_NUM_CORES": "8", "NEURON_PROCESS_TAG": "alpha", "FAKE_KERNEL_ID": "4f2c-alpha"},
                        {"NEURON_RT_NUM_CORES": "4", "NEURON_PROCESS_TAG": "beta"})
    # Before this process owns anything: the driver view predicts init()'s exact failure, as a warning (this
    # process has not called init(); cores held by others are no error of its own).
    status = DriverStatus(autostart=False, env={})
    widgets.append(status)
    found = _ids(status)
    busy = found["cores:busy"]
    assert busy["detail"] == "NeuronCore(s) not available - Requested:nc0-nc31 Available:20"
    assert busy["severity"] == "warning" and not [f for f in found.values() if f["severity"] == "error"]
    assert f"pid {alpha.pid}" in busy["title"] and "Jupyter kernel 4f2c-alpha" in busy["title"]
    assert found[f"cores:held:{beta.pid}"]["severity"] == "info"
    with pytest.raises(nrt_lab.NrtError) as failure:
        nrt_lab.init()
    assert busy["detail"] in str(failure.value)

    monkeypatch.setenv("NEURON_RT_NUM_CORES", "2")
    runtime = nrt_lab.init()
    core_map = CoreMap(autostart=False)
    widgets.append(core_map)
    owners = {o["pid"]: o for o in core_map.owners()}
    records = {o.pid: o for o in machine.owners()}
    assert set(owners) == {alpha.pid, beta.pid, os.getpid()}
    assert owners[alpha.pid]["tag"] == "alpha" and owners[beta.pid]["tag"] == "beta"
    assert owners[alpha.pid]["kernel"] == "4f2c-alpha" and owners[beta.pid]["kernel"] == ""
    assert alpha.pid != beta.pid and "python" in owners[beta.pid]["cmd"]
    for pid, owner in owners.items():
        assert owner["color"] == owner_color(pid, records[pid].start_time)
        assert owner["cores"] == list(records[pid].cores)
    assert len({o["color"] for o in owners.values()}) == 3
    expected = {c: 0 for c in range(32)}
    for pid, owner in owners.items():
        expected.update(dict.fromkeys(owner["cores"], pid))
    assert core_map.core_owners() == expected
    assert core_map.highlighted_cores() == list(runtime.cores) == [12, 13]
    state = core_map.current_state()
    assert state["me"]["pid"] == os.getpid() and state["inst"]["kind"] == "torus"
    assert len(state["inst"]["links"]) == 32 and sum(w for _, _, w in state["inst"]["links"]) == 8

    # Colours are stable while the owners live, whoever else comes and goes.
    colours = {pid: o["color"] for pid, o in owners.items()}
    (gamma,) = spawn({"NEURON_RT_NUM_CORES": "1", "NEURON_PROCESS_TAG": "gamma"})
    core_map.refresh()
    after = {o["pid"]: o["color"] for o in core_map.owners()}
    assert {pid: after[pid] for pid in colours} == colours and gamma.pid in after

    html = core_map._repr_html_()
    assert html.count('title="nc') == 32 and "alpha" in html and "4f2c-alpha" in html and "&#9733;" in html


def test_terminate_needs_confirmation_and_refuses_non_owners(machine: Machine, spawn: Spawn,
                                                             widgets: list[Any]) -> None:
    (victim,) = spawn({"NEURON_RT_NUM_CORES": "2", "NEURON_PROCESS_TAG": "victim"})
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        core_map = CoreMap(autostart=False)
        widgets.append(core_map)
        with pytest.raises(ActionRefused, match="no termination is pending"):
            core_map.confirm_terminate(victim.pid)
        with pytest.raises(ActionRefused, match="does not own any NeuronCore"):
            core_map.request_terminate(bystander.pid)
        with pytest.raises(ActionRefused, match="this kernel"):
            core_map.request_terminate(os.getpid())
        assert core_map.pending == {}

        pending = core_map.request_terminate(victim.pid)  # step 1: select
        assert pending["pid"] == victim.pid and pending["tag"] == "victim" and core_map.pending["pid"] == victim.pid
        assert victim.proc.poll() is None, "selecting must not terminate"
        with pytest.raises(ActionRefused, match="not the process selected"):
            core_map.confirm_terminate(bystander.pid)
        # The front-end path: a confirmation with the wrong token is refused too, and reported.
        reply = core_map.handle_action({"action": "confirm", "pid": victim.pid, "token": "forged"})
        assert reply.startswith("Refused") and core_map.message == reply and victim.proc.poll() is None

        core_map.handle_action({"action": "cancel"})
        assert core_map.pending == {}
        with pytest.raises(ActionRefused):
            core_map.confirm_terminate(victim.pid)

        token = core_map.request_terminate(victim.pid)["token"]
        reply = core_map.handle_action({"action": "confirm", "pid": victim.pid, "token": token})  # step 2
        assert reply.startswith("Sent SIGTERM"), reply
        assert victim.proc.wait(timeout=10) == -signal.SIGTERM
        assert bystander.poll() is None
        assert victim.pid not in {o.pid for o in machine.owners()}  # its lock went with the process
        core_map.refresh()
        assert set(core_map.core_owners().values()) == {0} and core_map.pending == {}
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


def test_release_frees_this_kernels_cores(machine: Machine, widgets: list[Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "4")
    nrt_lab.init()
    core_map = CoreMap(autostart=False)
    widgets.append(core_map)
    assert core_map.highlighted_cores() == [0, 1, 2, 3]
    log = record_messages(core_map)
    reply = core_map.handle_action({"action": "release"})
    assert reply == "Released this process's NeuronCores nc0-nc3 (nrt_lab.close())."
    assert nrt_lab.get_runtime() is None and machine.owners() == []
    assert core_map.highlighted_cores() == [] and set(core_map.core_owners().values()) == {0}
    deltas = [s["delta"] for _, _, s in log.updates() if "delta" in s]
    assert len(deltas) == 1 and set(deltas[0]["set"]) == {f"c{c}" for c in range(4)}
    assert deltas[0]["del"] == [f"o{os.getpid()}"]
    assert "nothing to release" in core_map.release_own_cores()


def test_record_fields_are_escaped_in_every_view(machine: Machine, widgets: list[Any]) -> None:
    from nrt_lab.driver import OwnerRecord
    from nrt_lab.driver.locks import CoreClaim
    from nrt_lab.runtime import RUNTIME_VERSION

    claim = CoreClaim(root=machine.root, physical_cores=())
    claim.publish(OwnerRecord(pid=os.getpid() + 1, command="x\x1b[2J\x1b]0;pwned\x07", tag="t\x1b[31m",
                              runtime_version=RUNTIME_VERSION, cores=(0, 1), start_time=1.0, kernel_id="k\x1b"))
    try:
        core_map = CoreMap(autostart=False)
        status = DriverStatus(autostart=False, env={})
        widgets.extend([core_map, status])
        (owner,) = core_map.owners()
        assert (owner["cmd"], owner["tag"], owner["kernel"]) == ("x\\x1b[2J\\x1b]0;pwned\\x07", "t\\x1b[31m", "k\\x1b")
        for widget in (core_map, status):
            shown = json.dumps(widget.current_state(), ensure_ascii=False) + widget._repr_html_() + repr(widget)
            assert "\x1b" not in shown and "\x07" not in shown
    finally:
        claim.release()


# ============================================================================================== DriverStatus


def test_driver_missing(machine: Machine, widgets: list[Any]) -> None:
    machine.uninstall_driver()
    status = DriverStatus(autostart=False, env={})
    widgets.append(status)
    finding = _ids(status)["driver:missing"]
    assert finding["severity"] == "error" and finding["detail"] == driver_gate(None)
    assert finding["detail"] == ("Unable to determine Neuron Driver version. Please check aws-neuron-dkms package "
                                  "is installed.")
    state = status.current_state()
    assert state["gate"] == {"ok": False, "message": finding["detail"], "minimum": "2.1.5.0"}
    assert repr(status).startswith("DriverStatus(aws-neuronx-dkms installed not installed, loaded not loaded")
    assert "FAILS" in repr(status)


def test_driver_too_old(machine: Machine, widgets: list[Any]) -> None:
    machine.install_driver(parse_driver_version("2.0.0"))
    status = DriverStatus(autostart=False, env={})
    widgets.append(status)
    finding = _ids(status)["driver:old"]
    assert finding["detail"] == ("This runtime requires Neuron Driver version 2.0 or greater. Please upgrade "
                                  "aws-neuron-dkms package.")
    assert status.current_state()["driver"]["loaded"] == "2.0.0.0" and not status.current_state()["gate"]["ok"]


def test_driver_reload_pending_and_this_kernel_holds_all_cores(machine: Machine, widgets: list[Any]) -> None:
    nrt_lab.init()  # every core, as a notebook that calls init() with no variable does
    machine.install_driver(parse_driver_version("2.26.0.0"))  # cores in use: the old module stays loaded
    status = DriverStatus(autostart=False, env={})
    widgets.append(status)
    found = _ids(status)
    assert found["driver:reload"]["severity"] == "warning"
    assert "installed 2.26.0.0, loaded 2.24.7.0" in found["driver:reload"]["detail"]
    assert f"pid {os.getpid()}" in found["driver:reload"]["remedy"]
    assert found["cores:all-mine"]["title"].startswith("This process holds all 32 NeuronCores")
    assert status.current_state()["driver"]["reload_pending"] is True
    nrt_lab.close()
    machine.reload_driver()
    status.refresh()
    assert not {"driver:reload", "cores:all-mine"} & set(_ids(status))


@pytest.mark.parametrize(
    ("value", "symptom"),
    [
        ("a", None),
        ("3-1", None),
        ("0,2", "Neuron cores are not contiguous"),
        ("40", "NEURON_RT_VISIBLE_CORES='40' is invalid: NeuronCore 40 does not exist on trn1.32xlarge (32 "
               "NeuronCores); accepted: ids and ranges between 0 and 31"),
    ],
)
def test_malformed_visible_cores(machine: Machine, widgets: list[Any], value: str, symptom: str | None) -> None:
    status = DriverStatus(autostart=False, env={"NEURON_RT_VISIBLE_CORES": value})
    widgets.append(status)
    if symptom is None:  # a syntax error: exactly the runtime's ConfigError text
        with pytest.raises(ConfigError) as error:
            RuntimeConfig.from_env({"NEURON_RT_VISIBLE_CORES": value})
        symptom = str(error.value)
    errors = [f for f in status.findings() if f["severity"] == "error"]
    assert [f["detail"] for f in errors] == [symptom]
    (row,) = status.current_state()["config"]
    assert row["name"] == "NEURON_RT_VISIBLE_CORES" and row["status"] == "error"
    with pytest.raises(nrt_lab.NrtError) as failure:
        nrt_lab.init(env={"NEURON_RT_VISIBLE_CORES": value})
    assert symptom in str(failure.value)


def test_ncg_set_is_flagged(machine: Machine, widgets: list[Any]) -> None:
    status = DriverStatus(autostart=False, env={"NEURONCORE_GROUP_SIZES": "2,2", "NEURON_RT_VISIBLE_CORES": "0-3"})
    widgets.append(status)
    ncg = _ids(status)["config:ncg"]
    assert ncg["severity"] == "warning" and "deprecated" in ncg["title"]
    rows = {r["name"]: r for r in status.current_state()["config"]}
    assert rows["NEURONCORE_GROUP_SIZES"]["status"] == "deprecated"
    assert rows["NEURON_RT_VISIBLE_CORES"]["status"] == "ok"
    status.set_environment({"NEURONCORE_GROUP_SIZES": "4x1", "NEURON_RT_NUM_CORES": "4"})
    conflict = _ids(status)["config:ncg"]
    assert conflict["severity"] == "error"
    assert conflict["detail"] == ("NEURONCORE_GROUP_SIZES=4x1 cannot be combined with NEURON_RT_NUM_CORES=4; "
                                   "unset NEURONCORE_GROUP_SIZES")
    with pytest.raises(nrt_lab.NrtError, match="cannot be combined"):
        nrt_lab.init(env={"NEURONCORE_GROUP_SIZES": "4x1", "NEURON_RT_NUM_CORES": "4"})
    assert status.current_state()["daemon"]["text"] == "not running"


# ============================================================================================== TopView


def test_top_view_utilization_changes_between_samples(busy_machine: tuple[Path, Owner], widgets: list[Any]) -> None:
    root, owner = busy_machine
    view = TopView(root=root, autostart=False)
    widgets.append(view)
    samples = []
    for _ in range(3):
        owner.wait_executions(10, cores=2)  # the rates of the next sample cover at least 10 executions per core
        view.refresh()
        samples.append(view.utilization())
    busy = owner.cores[:2]
    assert all(s[c] > 0 for s in samples[1:] for c in busy), samples
    assert any(samples[i][c] != samples[i + 1][c] for i in range(2) for c in busy)
    assert all(s[c] == 0 for s in samples for c in range(32) if c not in owner.cores)
    assert all(view.tflops()[c] > 0 for c in busy)
    (process,) = view.processes()
    assert process["pid"] == owner.pid and process["tag"] == "busy" and process["cores"] == "nc0-nc3"
    state = view.current_state()
    assert state[f"x{owner.pid}"][0] > 0 and state[f"md{owner.pid}"][0][1] == "mlp"
    assert state[f"m{owner.pid}"][5] == 4 * 96 * 1024 * 1024  # microcode: model code on 4 physical cores


def _rebuild(first: Mapping[str, Any], updates: list[tuple[float, int, dict[str, Any]]]) -> dict[str, Any]:
    """What a browser holds: the first full state, then every delta applied in order (history left out)."""
    rebuilt = {k: v for k, v in first.items() if k != "hist"}
    for _, _, message in updates:
        delta = message.get("delta")
        if delta:
            rebuilt.update(delta["set"])
            for key in delta["del"]:
                rebuilt.pop(key)
            rebuilt["seq"] = delta["seq"]
    return rebuilt


def test_top_view_rate_pause_and_deltas_on_a_fake_clock(busy_machine: tuple[Path, Owner],
                                                        widgets: list[Any]) -> None:
    root, _owner = busy_machine
    clock = FakeClock()
    view = TopView(root=root, autostart=False, period=0.01, history_size=5, clock=clock)
    widgets.append(view)
    assert view.period == MIN_PERIOD
    log = record_messages(view)
    first = view.current_state()

    # Ticks every 30 ms of clock time for 3 s: updates come at most every MIN_PERIOD, so at most 10 a second.
    for _ in range(100):
        clock.advance(0.03)
        view.sampler.tick()
    times = [t for t, _, s in log.updates() if "delta" in s]
    assert 25 <= len(times) <= 30, len(times)
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= MIN_PERIOD - 1e-9
    assert all(len([t for t in times if start <= t < start + 1.0]) <= 10 for start in times)
    full = view.state_bytes(derived=False)
    sizes = [n for _, n, s in log.updates() if "delta" in s]
    assert max(sizes) < full and sum(sizes) / len(sizes) < 0.5 * full, (sizes, full)

    # Pause: nothing changes however much time passes; resume: the next due tick updates.
    view.pause()
    seq, count = view.seq, len(log.updates())
    for _ in range(20):
        clock.advance(0.1)
        view.sampler.tick()
    assert view.seq == seq and len(log.updates()) == count
    view.resume()
    clock.advance(0.1)
    view.sampler.tick()
    assert view.seq == seq + 1

    # What the browser got (full state, then every delta in order) is the current state; history is bounded.
    current = view.current_state()
    assert _rebuild(first, log.updates()) == {k: v for k, v in current.items() if k != "hist"}
    assert len(current["hist"]) == 5 == len(view.history())
    assert current["hist"][-1][1:] == [current[f"c{c}"][0] for c in range(32)]
    # A reload or a second view asks for the model's state: it is the full current state.
    assert view.get_state()["state"] == current


def test_top_view_thread_starts_updates_and_stops(busy_machine: tuple[Path, Owner], widgets: list[Any]) -> None:
    root, _owner = busy_machine
    view = TopView(root=root, autostart=False, period=0.1)
    widgets.append(view)
    log = record_messages(view)
    first = view.current_state()
    view.start()
    assert view.running and view.thread is not None and view.thread.is_alive()
    assert view.sampler.wait_for(lambda: view.seq >= 3, timeout=30), "the thread never updated the view"
    thread = view.thread
    view.stop()
    assert thread is not None and not thread.is_alive() and not view.running
    ticks, seq = view.sampler.ticks, view.seq
    assert not view.sampler.wait_for(lambda: view.sampler.ticks > ticks, timeout=0.3)  # stopped: no tick comes
    assert view.seq == seq
    current = view.current_state()
    assert _rebuild(first, log.updates()) == {k: v for k, v in current.items() if k != "hist"}


def test_sampler_ticks_only_due_widgets(machine: Machine, widgets: list[Any]) -> None:
    clock = FakeClock()
    sampler = Sampler(name="test", clock=clock)
    fast = TopView(sampler=sampler, autostart=False, period=0.25)
    slow = CoreMap(sampler=sampler, autostart=False, period=1.0)
    widgets.extend([fast, slow])
    sampler.attach(fast)
    sampler.attach(slow)
    fast_seq, slow_count = fast.seq, slow.update_count
    next_due = sampler.tick()
    assert fast.seq == fast_seq and next_due == 0.25  # nothing is due before a period passed
    for _ in range(10):
        clock.advance(0.125)
        sampler.tick()
    assert fast.seq == fast_seq + 5  # every 0.25 s of clock time (TopView sends a heartbeat delta)
    assert slow.update_count == slow_count  # nothing changed on the machine: CoreMap sends nothing
    assert sampler.ticks == 5


def test_dashboard_uses_one_thread_and_stops(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("nrt_lab.widgets")}
    dashboard = show(period=0.2)
    try:
        assert isinstance(dashboard, Dashboard) and show() is dashboard
        assert "CoreMap(trn1.32xlarge" in capsys.readouterr().out
        mine = {t for t in threading.enumerate() if t.name.startswith("nrt_lab.widgets")} - before
        assert mine == {dashboard.thread}
        assert dashboard.sampler.wait_for(lambda: dashboard.top_view.seq >= 2, timeout=30)
        dashboard.stop()
        assert dashboard.thread is not None and not dashboard.thread.is_alive()
    finally:
        dashboard.close()


# ============================================================================================== static reprs


def test_static_html_and_deterministic_text(machine: Machine, widgets: list[Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "3")
    nrt_lab.init()
    made = [CoreMap(autostart=False), DriverStatus(autostart=False, env={}), TopView(autostart=False)]
    again = [CoreMap(autostart=False), DriverStatus(autostart=False, env={}), TopView(autostart=False)]
    widgets.extend(made + again)
    for first, second in zip(made, again, strict=True):
        bundle, _ = first._repr_mimebundle_()
        charts = {PLOTLY_MIME} if isinstance(first, TopView) else set()  # its static chart (nbviewer, Voila)
        assert set(bundle) == {"text/plain", "text/html", WIDGET_MIME} | charts
        if charts:
            figure = bundle[PLOTLY_MIME]
            assert figure["data"][0]["type"] == "heatmap" and len(figure["data"][0]["y"]) == 32
            assert "uid" not in json.dumps(figure)  # deterministic: strict nbval can compare it
            assert figure == first._repr_mimebundle_()[0][PLOTLY_MIME]
        assert bundle[WIDGET_MIME]["model_id"] == first.model_id
        assert bundle["text/html"] == first._repr_html_() and "<script" not in bundle["text/html"]
        text = bundle["text/plain"]
        assert "0x" not in text and first.model_id not in text and str(os.getpid()) not in text
        first.refresh()
        assert repr(first) == text == repr(second)
    assert repr(made[0]) == ("CoreMap(trn1.32xlarge lnc=1: 32 NeuronCores on 16 devices, torus topology; 3 owned "
                             "by 1 process, 29 free; this kernel holds 3)")
    assert repr(made[2]) == ("TopView(trn1.32xlarge lnc=1: 32 NeuronCores, 1 runtime, mode=percent, tab=all, "
                             "history of 60 updates)")
    for widget in (made[0], made[2]):
        html = widget._repr_html_()
        assert 'class="nrt-core-grid"' in html and html.count("<tr><th") >= 16 and html.count('title="nc') == 32
    # What IPython (and so nbconvert/nbval) stores for a live widget and, after close(), for a closed one.
    formatter = DisplayFormatter()
    live, _ = formatter.format(made[0])
    assert set(live) == {"text/plain", "text/html", WIDGET_MIME} and live["text/plain"] == repr(made[0])
    made[0].close()
    closed, _ = formatter.format(made[0])
    assert set(closed) == {"text/plain", "text/html"} and closed["text/html"] == live["text/html"]


# ============================================================================================== layering


def test_widgets_import_only_the_read_side_api() -> None:
    """Widgets read the machine through nrt_lab.monitor (a cluster through nrt_lab.cluster's views, which read
    each node through nrt_lab.monitor): no driver import, no runtime submodule."""
    import ast

    package = Path(nrt_lab.__file__).parent / "widgets"
    allowed = ("nrt_lab.monitor", "nrt_lab.errors", "nrt_lab.hardware", "nrt_lab.widgets", "nrt_lab.cluster")
    found: list[str] = []
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("nrt_lab") and name != "nrt_lab.runtime" and not name.startswith(allowed):
                    found.append(f"{source.name}: {name}")
    assert found == []
    assert {p.name for p in (package / "static").iterdir()} >= {"common.js", "core_map.js", "driver_status.js",
                                                                 "top_view.js", "widgets.css"}


# ============================================================================================== issue 9 defects


def _delta_e(first: str, second: str) -> float:
    """CIE76 colour difference of two ``#rrggbb`` colours (≥ 20: told apart at a glance)."""
    import math

    def lab(color: str) -> tuple[float, float, float]:
        def lin(c: float) -> float:
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        r, g, b = (lin(int(color[i : i + 2], 16) / 255) for i in (1, 3, 5))
        x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
        y = 0.2126 * r + 0.7152 * g + 0.0722 * b
        z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

        def f(t: float) -> float:
            return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116
        return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))

    return math.dist(lab(first), lab(second))


def test_owner_palette_is_fixed_ordered_distinct_and_readable() -> None:
    from nrt_lab.widgets._palette import OWNER_PALETTE, OwnerPalette, contrast_ratio, text_color

    assert len(OWNER_PALETTE) >= 12
    for i, first in enumerate(OWNER_PALETTE):
        assert contrast_ratio(first, text_color(first)) >= 4.5, first
        for second in OWNER_PALETTE[i + 1:]:
            assert _delta_e(first, second) >= 20, (first, second)
    palette = OwnerPalette()
    owners = [(1000 + i, 50.0 + i) for i in range(12)]
    # Given out of order: colours still follow arrival (start time), not pid or the order of the list.
    colors = palette.assign(reversed(owners))
    assert [colors[pid] for pid, _ in owners] == list(OWNER_PALETTE[:12])
    assert palette.color(1003, 53.0) == OWNER_PALETTE[3]  # the same colour everywhere it is asked
    # Owner 1001 leaves, a newcomer arrives: it takes the freed colour; nobody else changes.
    later = palette.assign([o for o in owners if o[0] != 1001] + [(2000, 99.0)])
    assert later[2000] == OWNER_PALETTE[1]
    assert all(later[pid] == colors[pid] for pid, _ in owners if pid != 1001)
    # A pid reused by a new process (other start time) is a new owner.
    assert palette.assign([(1000, 50.0), (1002, 120.0)])[1002] == OWNER_PALETTE[1] != colors[1002]
    assert len(set(palette.assign((i, float(i)) for i in range(15)).values())) == 15


@pytest.mark.parametrize(("value", "text"), [
    (100, "100"), (190, "190"), (220, "220"), (1e-05, "1e-5"), (0, "0"), (-0.0, "0"), (-220, "-220"),
    (-3.5, "-3.5"), (float("nan"), "-"), (None, "-"), (float("inf"), "inf"), (0.5, "0.5"), (12.345, "12.3"),
    (1234, "1234"), (999.6, "1000"), (99.96, "100"), (2.5e-07, "2.5e-7"), (0.00123, "0.00123"),
])
def test_format_number_keeps_significant_zeros(value: float | None, text: str) -> None:
    from nrt_lab.widgets._static import format_number

    assert format_number(value) == text


def test_owner_colours_agree_between_core_map_and_top_view(machine: Machine, spawn: Spawn,
                                                           widgets: list[Any]) -> None:
    from nrt_lab.widgets._palette import OWNER_PALETTE

    first, second = spawn({"NEURON_RT_NUM_CORES": "2", "NEURON_PROCESS_TAG": "first"},
                          {"NEURON_RT_NUM_CORES": "2", "NEURON_PROCESS_TAG": "second"})
    core_map, top = CoreMap(autostart=False), TopView(autostart=False)
    widgets.extend([core_map, top])
    by_map = {o["pid"]: o["color"] for o in core_map.owners()}
    by_top = {p["pid"]: p["color"] for p in top.processes()}
    assert by_map == by_top and len(set(by_map.values())) == 2
    ordered = sorted(core_map.owners(), key=lambda o: (o["start"], o["pid"]))
    assert [o["color"] for o in ordered] == list(OWNER_PALETTE[:2])  # order of arrival


def test_driver_status_is_calm_when_only_others_own_cores(machine: Machine, spawn: Spawn,
                                                          widgets: list[Any]) -> None:
    spawn({"NEURON_RT_NUM_CORES": "8", "NEURON_PROCESS_TAG": "other"})
    status = DriverStatus(autostart=False, env={"NEURON_RT_NUM_CORES": "4"})
    widgets.append(status)
    verdict = status.current_state()["verdict"]
    assert verdict == {"level": "calm", "text": "OK for this kernel (1 note)"}, verdict
    html = status._repr_html_()
    assert "#b71c1c" not in html and "#c62828" not in html and "ERROR" not in html  # no red anywhere
    # Asking for every core while others hold some: init() here would fail, diagnose() says "warning" (amber,
    # with the allocator's line), never the red error the issue saw.
    status.set_environment({})
    assert status.current_state()["verdict"] == {"level": "warning", "text": "1 warning for this kernel"}
    assert "#b71c1c" not in status._repr_html_()
    status.set_environment({"NEURON_RT_VISIBLE_CORES": "zero"})
    assert status.current_state()["verdict"]["level"] == "error"  # a real problem of this kernel is red


def test_core_map_messages_and_selections_do_not_go_stale(machine: Machine, spawn: Spawn,
                                                          widgets: list[Any]) -> None:
    from nrt_lab.widgets.core_map import MESSAGE_TTL_S

    (victim,) = spawn({"NEURON_RT_NUM_CORES": "2", "NEURON_PROCESS_TAG": "victim"})
    clock = FakeClock()
    core_map = CoreMap(autostart=False, clock=clock)
    widgets.append(core_map)
    assert core_map.release_own_cores().startswith("This process holds no NeuronCore")
    clock.advance(MESSAGE_TTL_S / 2)
    core_map.refresh()
    assert core_map.message  # still fresh
    clock.advance(MESSAGE_TTL_S / 2)
    core_map.refresh()
    assert core_map.message == ""  # stale: gone
    core_map.request_terminate(victim.pid)
    clock.advance(MESSAGE_TTL_S * 3)
    core_map.refresh()
    assert core_map.pending["pid"] == victim.pid and core_map.message  # a pending choice waits for the user
    victim.proc.kill()
    victim.proc.wait(timeout=10)
    core_map.refresh()
    assert core_map.pending == {} and core_map.message.startswith(f"Pid {victim.pid} no longer owns")


def test_dashboard_draws_the_core_grid_once(machine: Machine, widgets: list[Any]) -> None:
    board = Dashboard(autostart=False)
    widgets.append(board)
    assert board.core_map.show_grid is False and board._repr_html_().count('class="nrt-core-grid"') == 1
    assert CoreMap(autostart=False, show_grid=True)._repr_html_().count('class="nrt-core-grid"') == 1


def test_plotly_library_is_one_model_per_kernel(machine: Machine, widgets: list[Any]) -> None:
    from nrt_lab.widgets._plotly import PlotlyLibrary

    top, board = TopView(autostart=False), Dashboard(autostart=False)
    plain = TopView(autostart=False, charts=False)
    widgets.extend([top, board, plain])
    assert isinstance(top.plotly, PlotlyLibrary) and top.plotly is board.top_view.plotly
    assert plain.plotly is None and plain.charts is False
    assert len(top.plotly.source) > 3_000_000 and "newPlot" in top.plotly.source  # the real plotly.min.js
    assert top.state_bytes() < 100_000  # the chart widget's own state does not carry the library


# ============================================================================================== nrt_lab.plot


def _report(pid: int, util: list[float], completed: int = 10, errors: int = 0) -> dict[str, Any]:
    """One neuron-monitor report line (the fields nrt_lab.plot reads) for one runtime."""
    cores = {str(i): {"neuroncore_utilization": u, "flops": int(u * 1e9)} for i, u in enumerate(util)}
    return {"neuron_runtime_data": [{"pid": pid, "neuron_runtime_tag": f"t{pid}", "report": {
        "neuroncore_counters": {"period": 1.0, "neuroncores_in_use": cores},
        "memory_used": {"neuron_runtime_used_bytes": {"usage_breakdown": {"neuroncore_memory_usage": {
            "0": {"constants": 1 << 20, "model_code": 1 << 27}}}}},
        "execution_stats": {"period": 1.0, "execution_summary": {"completed": completed},
                            "error_summary": {"generic": errors},
                            "latency_stats": {"total_latency": {"p50": 0.1, "p99": 0.19, "p100": 0.22}}}}}],
        "neuron_hardware_info": {"neuron_device_memory_size": 32 << 30, "neuroncore_per_device_count": 2},
        "instance_info": {"instance_type": "trn1.2xlarge"}}


def test_plot_reads_a_recording_and_builds_every_chart(tmp_path: Path) -> None:
    from nrt_lab import plot

    path = tmp_path / "run.jsonl"
    lines = [_report(7, [50.0, 0.0]), _report(7, [100.0, 20.0], completed=20, errors=2), _report(7, [0.0, 0.0])]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n", encoding="utf-8")
    rec = plot.read_recording(path)
    assert rec.times == [1.0, 2.0, 3.0] and rec.cores == [0, 1] and rec.owners == {7: "t7"}
    assert rec.core_capacity == 16 << 30 and rec.instance == "trn1.2xlarge"
    charts = plot.figures(rec)
    area = charts["utilization"].data[0]
    assert list(area.y) == [25.0, 60.0, 0.0] and area.stackgroup == "u" and area.name == "t7 (7)"
    assert [list(row) for row in charts["cores"].data[0].z] == [[50.0, 100.0, 0.0], [0.0, 20.0, 0.0]]
    names = [t.name for t in charts["executions"].data]
    assert names == ["t7 (7) executions/s", "t7 (7) latency p50", "t7 (7) latency p99", "t7 (7) latency p100",
                     "t7 (7) errors"]
    assert list(charts["executions"].data[3].y) == pytest.approx([220.0] * 3)  # p100 220 ms, not "22"
    assert list(charts["executions"].data[4].x) == [2.0]  # the error marker sits where errors happened
    memory = charts["memory"]
    assert [t.name for t in memory.data] == ["constants", "model_code", "capacity"]
    assert list(memory.data[2].y) == [16.0]
    assert list(plot.utilization_figure(rec, "tflops").data[0].y) == pytest.approx([0.05, 0.12, 0.0])
    assert charts["cores"].layout.xaxis.title.text and charts["cores"].layout.yaxis.title.text == "NeuronCore"


@pytest.mark.parametrize(("text", "message"), [
    ('{"neuron_runtime_data": []}\n{not json\n', "run.jsonl line 2: not JSON"),
    ('[1, 2]\n', "run.jsonl line 1: not a neuron-monitor report"),
    ('{"neuron_runtime_data": [{"pid": "x"}]}\n', "run.jsonl line 1: malformed neuron-monitor report"),
    ("\n\n", "holds no neuron-monitor report"),
])
def test_plot_names_the_bad_line(tmp_path: Path, text: str, message: str) -> None:
    from nrt_lab import plot

    path = tmp_path / "run.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        plot.read_recording(path)
    with pytest.raises(ValueError, match="cannot read the recording"):
        plot.read_recording(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="accepted: 'percent' or 'tflops'"):
        plot.utilization_figure(plot.parse_reports([_report(1, [1.0])]), "watts")


def test_dashboard_is_one_screen_with_a_calm_header_presentation_size_and_side_panel(
        machine: Machine, widgets: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display
    from sidecar import Sidecar

    board = Dashboard(autostart=False)
    widgets.append(board)
    assert board.driver_status.collapsed is True and board.top_view.compact is True
    assert board.core_map.show_grid is False and board.size == "normal"
    board.size = "presentation"
    assert {part.size for part in board.parts} == {"presentation"}
    with pytest.raises(traitlets.TraitError, match="accepted: 'normal', 'presentation'"):
        board.top_view.size = "huge"
    with pytest.raises(ValueError, match="size='huge' is invalid"):
        Dashboard(autostart=False, size="huge")
    shown: list[Any] = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    panel = board.open_in_sidecar("cores")
    widgets.append(panel)
    assert isinstance(panel, Sidecar) and panel.title == "cores" and shown == [board]


def test_core_map_topology_is_live_with_utilization(busy_machine: tuple[Path, Owner], widgets: list[Any]) -> None:
    root, owner = busy_machine
    core_map = CoreMap(root=root, autostart=False)
    widgets.append(core_map)
    assert "u" not in core_map.current_state()  # the grid view reads owners only (no stats page)
    core_map.view = "topology"
    core_map.refresh()
    # Utilization is a whole percent over the period between two refreshes: on a loaded machine a period can
    # hold too little of the owner's work to round above 0, so keep refreshing (after more executions) until the
    # busy core shows some; a free core never does.
    for _ in range(50):
        owner.wait_executions(3, cores=2)
        core_map.refresh()
        state = core_map.current_state()
        assert len(state["u"]) == 32 and all(isinstance(u, int) and 0 <= u <= 100 for u in state["u"])
        assert state["u"][31] == 0  # a free core
        if state["u"][owner.cores[0]] > 0:  # a busy core of the owner
            break
    else:
        pytest.fail(f"the owner's busy core never showed utilization: {state['u']}")
    assert len(state["inst"]["mem"]) == 16
    core_map.view = "grid"
    core_map.refresh()
    assert "u" not in core_map.current_state()


def test_static_figures_and_live_widgets_share_one_heat_scale() -> None:
    """The live grid (static/common.js) and nrt_lab.plot's heatmaps colour a utilization the same way."""
    import re

    from nrt_lab.widgets import _figures
    from nrt_lab.widgets._palette import HEAT_HIGH, HEAT_IDLE, HEAT_LOW, heat_color, heat_colorscale

    js = (Path(_figures.__file__).parent / "static" / "common.js").read_text(encoding="utf-8")
    match = re.search(r"const HEAT_LOW = \[(\d+), (\d+), (\d+)\], HEAT_HIGH = \[(\d+), (\d+), (\d+)\];", js)
    assert match is not None, "common.js no longer declares HEAT_LOW/HEAT_HIGH as this test expects"
    assert tuple(map(int, match.groups()[:3])) == HEAT_LOW and tuple(map(int, match.groups()[3:])) == HEAT_HIGH
    assert heat_color(0) == "#c8e6c9" and heat_color(100) == "#1b5e20" and heat_color(250) == heat_color(100)
    assert heat_color(float("nan")) == heat_color(0)
    figure = _figures.from_top_view({"inst": {"total": 2, "name": "trn1.2xlarge"}, "per": 0.5,
                                     "hist": [[0.0, 0.0, 50.0], [0.5, 100.0, 0.0]]})
    scale = [list(step) for step in figure.data[0].colorscale]
    assert scale == heat_colorscale() and scale[0][1] == HEAT_IDLE and scale[-1][1] == heat_color(100)
