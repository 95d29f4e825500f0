"""Shared fixtures of the scenario tests: an emulated machine per test, and real owner processes.

Every test gets its own state root under ``tmp_path`` (``NRT_LAB_ROOT``), with every ``NEURON*`` variable
removed from the test process, so tests pass in any order and in parallel (``pytest -n 2``).
Behaviour between processes is checked with real child processes (:class:`OwnerProcess`): each one calls
``nrt_lab.init()`` with the variables it is given, reports the outcome as one JSON line on stdout and then
waits for a command on stdin; every child is killed at teardown whatever happened.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import nrt_lab
from nrt_lab.driver import Machine, open_machine

# ---------------------------------------------------------------------------------------------- constants

BUSY_PREFIX = "NeuronCore(s) not available - Requested:"
REPLY_TIMEOUT_S = 30.0

# One libnrt console line (docs/behaviour.md §4): "%s %5d:%-5d %5s %5s:%-40s%s", checked field by field, independently of
# the code: stamp (27 chars), pid right-aligned in 5, tid left-aligned in 5, level and module right-aligned in 5,
# function left-aligned in 40, then the message.
STAMP_RE = re.compile(r"\d{4}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")


def _field(raw: str, pos: int, width: int, content: str, right: bool) -> tuple[str, int]:
    """The field at ``pos``: ``content`` padded with spaces to ``width`` columns (right- or left-aligned)."""
    match = re.compile(r" *(" + content + ")" if right else "(" + content + ")").match(raw, pos)
    assert match, f"bad field at column {pos}: {raw!r}"
    value = match[1]
    size = max(width, len(value))
    expected = value.rjust(size) if right else value.ljust(size)
    assert raw[pos : pos + size] == expected, f"field {value!r} misaligned at column {pos}: {raw!r}"
    return value, pos + size


@dataclass(frozen=True)
class LogLine:
    """One parsed console line."""

    raw: str
    stamp: dt.datetime
    pid: int
    tid: int
    level: str
    module: str
    function: str
    message: str


def parse_log_lines(text: str) -> list[LogLine]:
    """Parse every line of ``text`` as a libnrt console line (function names < 40); any other line fails."""
    lines: list[LogLine] = []
    for raw in text.splitlines():
        assert STAMP_RE.match(raw) and raw[27:28] == " ", f"not a libnrt log line: {raw!r}"
        stamp = dt.datetime.strptime(raw[:27], "%Y-%b-%d %H:%M:%S.%f")
        pid, pos = _field(raw, 28, 5, r"\d+", right=True)
        assert raw[pos : pos + 1] == ":", raw
        tid, pos = _field(raw, pos + 1, 5, r"\d+", right=False)
        assert raw[pos : pos + 1] == " ", raw
        level, pos = _field(raw, pos + 1, 5, r"[A-Z]+", right=True)
        assert raw[pos : pos + 1] == " ", raw
        module, pos = _field(raw, pos + 1, 5, r"[A-Z]+", right=True)
        assert raw[pos : pos + 1] == ":", raw
        function = raw[pos + 1 : pos + 41]
        assert re.fullmatch(r"[a-z_0-9]+ *", function) and len(function) == 40, f"function not padded to 40: {raw!r}"
        lines.append(LogLine(raw=raw, stamp=stamp, pid=int(pid), tid=int(tid), level=level, module=module,
                             function=function.strip(), message=raw[pos + 41 :]))
    return lines


def assert_single_log_line(text: str, level: str, module: str, function: str, message: str | None = None,
                           *, pid: int | None = None) -> LogLine:
    """``text`` holds exactly one log line, at ``level`` from ``module:function`` (and with ``message``)."""
    lines = parse_log_lines(text)
    assert len(lines) == 1, f"expected one log line, got {len(lines)}:\n{text}"
    line = lines[0]
    assert (line.level, line.module, line.function) == (level, module, function), line.raw
    if message is not None:
        assert line.message == message, line.raw
    if pid is not None:
        assert line.pid == pid, line.raw
    assert abs((dt.datetime.now() - line.stamp).total_seconds()) < 120, line.raw
    return line


def busy_message(requested: str | int, available: int) -> str:
    """libnrt's exact busy line (docs/behaviour.md §0)."""
    return f"NeuronCore(s) not available - Requested:{requested} Available:{available}"


# ---------------------------------------------------------------------------------------------- machine


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("NEURON", "NRT_LAB", "AWS_NEURON")):
            monkeypatch.delenv(key, raising=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "instance(name, lnc=None): instance type the machine_root fixture provisions (default trn1.32xlarge)"
    )


@pytest.fixture
def machine_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh state root (``NRT_LAB_ROOT``) provisioned as trn1.32xlarge or the ``instance`` marker's type.

    The test process's own runtime (if a test left one live) is closed at teardown.
    """
    _clean_environment(monkeypatch)
    root = tmp_path / "nrt-state"
    monkeypatch.setenv("NRT_LAB_ROOT", str(root))
    marker = request.node.get_closest_marker("instance")
    name, lnc = "trn1.32xlarge", None
    if marker is not None:
        name = marker.args[0]
        lnc = marker.kwargs.get("lnc", marker.args[1] if len(marker.args) > 1 else None)
    nrt_lab.close()
    open_machine(root).create(name, lnc)
    yield root
    nrt_lab.close()


@pytest.fixture
def machine(machine_root: Path) -> Machine:
    """The Machine handle of ``machine_root``."""
    return open_machine(machine_root)


# ---------------------------------------------------------------------------------------------- processes

# The first line is a marker so that a truncated command line still says what the process is.
_OWNER_SCRIPT = r"""# nrt-lab-test-owner
import json, os, signal, sys
signal.alarm(int(sys.argv[1]))
def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
import nrt_lab
if sys.argv[3] == "go":
    say(event="ready", pid=os.getpid())
    if sys.stdin.readline().strip() != "go":
        sys.exit(3)
try:
    rt = nrt_lab.init(nrt_lab.Framework[sys.argv[2]])
except nrt_lab.NrtError as exc:
    rt = None
    say(event="result", ok=False, pid=os.getpid(), status=int(exc.status), message=exc.message)
else:
    say(event="result", ok=True, pid=os.getpid(), cores=list(rt.cores), tag=rt.tag, lnc=rt.lnc)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "close":
        nrt_lab.close(); say(event="closed")
    elif cmd == "exit":
        break
nrt_lab.close()
"""


def child_environment(root: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any NEURON*/NRT_LAB* variable, plus ``root`` and ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON", "NRT_LAB", "AWS_NEURON"))}
    base["NRT_LAB_ROOT"] = str(root)
    base["PYTHONDONTWRITEBYTECODE"] = "1"
    base.update(env or {})
    return base


class OwnerProcess:
    """A real child process that calls ``nrt_lab.init()`` and then holds its cores until told to exit."""

    def __init__(self, root: Path, env: Mapping[str, str] | None, *, sync: bool, framework: str,
                 stderr_path: Path, lifetime_s: int = 240) -> None:
        self.root = root
        self.env = dict(env or {})
        self.stderr_path = stderr_path
        self._stderr_fh = open(stderr_path, "wb")  # noqa: SIM115 - closed in reap()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _OWNER_SCRIPT, str(lifetime_s), framework, "go" if sync else "now"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_fh,
            env=child_environment(root, env),
            close_fds=True,
        )
        self.pid = self.proc.pid
        self._buffer = b""
        self._result: dict[str, Any] | None = None

    # -- protocol
    def _read_message(self, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"owner process {self.pid} did not answer in {timeout} s; {self.stderr()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise AssertionError(
                        f"owner process {self.pid} exited ({self.proc.returncode}) without answering; {self.stderr()}"
                    )
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_ready(self) -> None:
        """Block until the child imported nrt_lab and waits for ``go`` (sync mode)."""
        message = self._read_message()
        assert message["event"] == "ready", message

    def go(self) -> None:
        """Let a synchronised child call init()."""
        self._send("go")

    def result(self) -> dict[str, Any]:
        """The outcome of the child's init(): ``ok``, ``cores`` or ``status``/``message``."""
        if self._result is None:
            message = self._read_message()
            assert message["event"] == "result", message
            self._result = message
        return self._result

    @property
    def ok(self) -> bool:
        return bool(self.result()["ok"])

    @property
    def cores(self) -> tuple[int, ...]:
        result = self.result()
        assert result["ok"], f"owner {self.pid} failed: {result}; {self.stderr()}"
        return tuple(result["cores"])

    def close_runtime(self) -> None:
        """Ask the child to call nrt_lab.close() while staying alive."""
        self._send("close")
        message = self._read_message()
        assert message["event"] == "closed", message

    def exit(self, timeout: float = 15.0) -> int:
        """Ask the child to close its runtime and exit; returns its exit status."""
        if self.proc.poll() is None:
            try:
                self._send("exit")
            except (BrokenPipeError, OSError):
                pass
        rc = self.proc.wait(timeout=timeout)
        self.reap()
        return rc

    def kill(self) -> int:
        """SIGKILL the child and reap it (its flocks are gone when this returns)."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        rc = self.proc.wait(timeout=15)
        self.reap()
        return rc

    def reap(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        if not self._stderr_fh.closed:
            self._stderr_fh.close()

    def stderr(self) -> str:
        """What the child wrote on stderr so far."""
        self._stderr_fh.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"OwnerProcess(pid={self.pid}, env={self.env}, result={self._result})"


OwnerFactory = Callable[..., OwnerProcess]


@pytest.fixture
def owner_process(tmp_path: Path, machine_root: Path) -> Iterator[OwnerFactory]:
    """Factory: ``owner_process(env, sync=False, framework="NO_FW", root=machine_root)`` starts a real owner.

    The child runs in the background; call ``.result()`` / ``.cores`` to wait for its init. With
    ``sync=True`` it imports nrt_lab, says ready and waits for ``.go()`` so that several children race.
    Every child is asked to exit, then SIGKILLed, at teardown.
    """
    started: list[OwnerProcess] = []
    counter = iter(range(10**6))

    def start(env: Mapping[str, str] | None = None, *, sync: bool = False, framework: str = "NO_FW",
              root: Path | None = None) -> OwnerProcess:
        owner = OwnerProcess(
            root or machine_root, env, sync=sync, framework=framework,
            stderr_path=tmp_path / f"owner-{next(counter)}.stderr",
        )
        started.append(owner)
        return owner

    yield start
    for owner in started:
        if owner.proc.poll() is None:
            try:
                owner.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
    deadline = time.monotonic() + 5
    for owner in started:
        try:
            owner.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            owner.proc.kill()
            owner.proc.wait(timeout=15)
        owner.reap()


def start_owners(factory: OwnerFactory, envs: list[Mapping[str, str]], **kwargs: Any) -> list[OwnerProcess]:
    """Start several owners at once and wait for all their results (faster than one after the other)."""
    owners = [factory(env, **kwargs) for env in envs]
    for owner in owners:
        owner.result()
    return owners


def race(factory: OwnerFactory, envs: list[Mapping[str, str]]) -> list[OwnerProcess]:
    """Start one owner per env, let them all import nrt_lab, then release them into init() together."""
    owners = [factory(env, sync=True) for env in envs]
    for owner in owners:
        owner.wait_ready()
    for owner in owners:
        owner.go()
    for owner in owners:
        owner.result()
    return owners


def run_python(script: str, root: Path, env: Mapping[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a short Python script in a fresh interpreter on ``root``."""
    return subprocess.run(
        [sys.executable, "-c", script], env=child_environment(root, env), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def cli_command() -> list[str]:
    """How to start the ``nrt-lab`` console script of this interpreter."""
    script = Path(sys.executable).parent / "nrt-lab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nrt_lab.tools.cli"]


def run_cli(args: list[str], root: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``nrt-lab ARGS`` as a real process on ``root``."""
    return subprocess.run(
        [*cli_command(), *args], env=child_environment(root), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def assert_only_syslog_grew(root: Path, before: dict[str, tuple[bytes, int]], *needles: str) -> None:
    """Nothing under ``root`` changed since ``before`` except lines appended to the emulated syslog, which
    (by default, errors go there too) now holds ``needles``."""
    after = snapshot_files(root)
    grown = after.pop("log/syslog", (b"", 0))[0].decode()
    earlier = dict(before)
    assert grown.startswith(earlier.pop("log/syslog", (b"", 0))[0].decode())
    assert all(needle in grown for needle in needles), (needles, grown[-500:])
    assert after == earlier


def snapshot_files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mode of every regular file under ``root`` (to prove nothing was rewritten)."""
    result: dict[str, tuple[bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            result[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode)
    return result


class FakeClock:
    """Time that moves only when a test says so (``advance``) or when the code under test waits, for every clock
    the project injects: ``nrt_lab.monitor.Clock`` (time, monotonic, sleep), NeuronMonitor's (a callable plus
    ``wait``). Starts at 1024 s: steps of 1/8 s stay exact in binary floating point."""

    def __init__(self, start: float = 1024.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    __call__ = monotonic

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    advance = sleep

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """NeuronMonitor's wait: time jumps to the deadline at once (True when ``stop`` is set)."""
        self.now += seconds
        return stop.is_set()


def kill_children(procs: list[subprocess.Popen[Any]]) -> None:
    """Teardown for tests that start plain child processes: kill those still running, reap them, close their pipes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=15)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
