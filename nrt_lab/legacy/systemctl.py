"""``nrt-lab systemctl start|stop|restart|status neuron-rtd[@<inst>]``: the systemd units of aws-neuron-runtime,
controlling real ``neuron-rtd`` processes of the emulated machine (docs/legacy.md).

``neuron-rtd.service`` runs ``neuron-rtd -c /opt/aws/neuron/config/neuron-rtd.config``; the template
``neuron-rtd@<inst>.service`` runs ``neuron-rtd -i <inst> -c /opt/aws/neuron/config/nrtd<inst>.json``. A unit exists only
while aws-neuron-runtime is installed, and starts only when ``/dev/neuron*`` exists, that is when the driver
module is loaded (``ConditionPathExistsGlob=/dev/neuron*``; otherwise it stays "inactive (dead)"). The daemon is
ready when it has written its pid file (``/run/neuron-rtd[@inst].pid``). What systemd would keep in its journal
and unit state lives under ``<root>/run/``; its messages go to the emulated syslog beside the daemon's own lines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrt_lab.driver import (
    Machine,
    StateError,
    append_state_text,
    atomic_write_json,
    make_state_dir,
    open_machine,
    read_state_json,
    unlink_state_file,
)
from nrt_lab.legacy.packages import RUNTIME_PACKAGE, is_installed
from nrt_lab.legacy.paths import (
    DEFAULT_CONFIG,
    NEURON_PREFIX,
    RUN_DIR,
    UNIT_NAME,
    pid_file,
    real_to_root,
    unit_name,
)

__all__ = [
    "CONDITION",
    "DESCRIPTION",
    "SystemctlError",
    "Unit",
    "UnitStatus",
    "add_parser",
    "format_ago",
    "parse_unit",
    "read_status",
    "render_status",
    "restart",
    "run",
    "start",
    "stop",
]

DESCRIPTION = "Neuron Runtime Daemon"
CONDITION = "ConditionPathExistsGlob=/dev/neuron*"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$", re.ASCII)
_LOG_TAIL_BYTES = 256 * 1024
_JOURNAL_TAIL_BYTES = 16 * 1024
_POLL_S = 0.02


class SystemctlError(Exception):
    """A systemctl request failed; ``status`` is systemctl's exit status for it."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Unit:
    """``neuron-rtd`` or one instance of the template ``neuron-rtd@``."""

    instance: str = ""

    @property
    def name(self) -> str:
        """``neuron-rtd`` or ``neuron-rtd@<inst>``."""
        return unit_name(self.instance)

    @property
    def service(self) -> str:
        """The full unit name, ``neuron-rtd[@inst].service``."""
        return f"{self.name}.service"

    @property
    def description(self) -> str:
        """The unit's Description= (the template's names its instance)."""
        return f"{DESCRIPTION} {self.instance}" if self.instance else DESCRIPTION

    @property
    def unit_file(self) -> str:
        """Where the package installs the unit file on a real machine."""
        return f"/lib/systemd/system/{UNIT_NAME}{'@' if self.instance else ''}.service"

    def exec_start(self) -> list[str]:
        """ExecStart= as the user sees it (real paths)."""
        binary = str(NEURON_PREFIX / "bin" / "neuron-rtd")
        if self.instance:  # the template: the instance's own config names its devices and socket
            return [binary, "-i", self.instance, "-c", str(NEURON_PREFIX / "config" / f"nrtd{self.instance}.json")]
        return [binary, "-c", str(DEFAULT_CONFIG)]


def parse_unit(text: str) -> Unit:
    """``neuron-rtd``, ``neuron-rtd.service``, ``neuron-rtd@<inst>`` or ``neuron-rtd@<inst>.service``."""
    name = text[: -len(".service")] if text.endswith(".service") else text
    if name == UNIT_NAME:
        return Unit()
    base, at, instance = name.partition("@")
    if base == UNIT_NAME and at:
        if not _INSTANCE_RE.match(instance):
            raise SystemctlError(
                f"invalid instance name {instance!r} in {text!r}; accepted: 1-64 characters of letters, digits, "
                "'_', '.', ':' and '-'", 2)
        return Unit(instance)
    raise SystemctlError(f"Unit {text} not found (nrt-lab systemctl knows neuron-rtd and neuron-rtd@<instance>)", 5)


@dataclass(frozen=True)
class UnitStatus:
    """What ``systemctl status`` shows for one unit (a pure value, rendered by :func:`render_status`)."""

    unit: Unit
    loaded: bool
    active: str  # "active", "inactive", "failed"
    sub: str  # "running", "dead", "failed"
    since: float | None = None
    main_pid: int = 0
    exit_code: int | None = None
    condition_failed_at: float | None = None
    result: str = ""  # "exit-code", "timeout", "signal" for a failed unit
    log_lines: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------- state of units
def _run_dir(root: Path) -> Path:
    path = real_to_root(root, RUN_DIR)
    if not path.is_dir():
        with contextlib.suppress(FileExistsError):
            make_state_dir(path)
    return path


def _state_file(root: Path, unit: Unit) -> Path:
    return _run_dir(root) / f"{unit.name}.unit.json"


def _journal_file(root: Path, unit: Unit) -> Path:
    return _run_dir(root) / f"{unit.name}.journal"


def _read_unit_state(root: Path, unit: Unit) -> dict[str, Any]:
    try:
        return read_state_json(_state_file(root, unit), "unit state", "; remove it") or {}
    except StateError:
        return {}  # a torn or damaged record is forgotten, like a unit systemd never saw


def _write_unit_state(root: Path, unit: Unit, **values: Any) -> None:
    atomic_write_json(_state_file(root, unit), values)


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a daemon whose parent is gone may linger as one until reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read(4096)
    except OSError:
        return False
    state = stat.rpartition(b")")[2].split()[:1]
    return state != [b"Z"] and state != [b"X"]


def _is_daemon_process(pid: int) -> bool:
    """Whether ``pid`` runs neuron-rtd (never signal a process that reused a stale pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read(8192)
    except OSError:
        return False
    return b"neuron-rtd" in cmdline or b"nrt_lab.legacy.daemon" in cmdline


def _main_pid(root: Path, unit: Unit) -> int:
    """The live daemon of ``unit`` from its pid file; 0 when it does not run."""
    path = pid_file(root, unit.instance)
    try:
        if not path.is_file() or path.stat().st_size > 64:
            return 0
        pid = int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return 0
    return pid if pid > 0 and _pid_alive(pid) and _is_daemon_process(pid) else 0


def _syslog(root: Path, program: str, message: str, now: float) -> None:
    stamp = _dt.datetime.fromtimestamp(now).strftime("%b %d %H:%M:%S")
    with contextlib.suppress(OSError):
        append_state_text(root / "log" / "syslog", f"{stamp} {socket.gethostname()} {program}: {message}\n")


def _daemon_argv(unit: Unit) -> list[str]:
    options = unit.exec_start()[1:]
    found = shutil.which("neuron-rtd")
    if found:
        return [found, *options]
    code = "import sys; from nrt_lab.legacy.daemon import main; sys.argv[0] = 'neuron-rtd'; sys.exit(main())"
    return [sys.executable, "-c", code, *options]


def _reap(pid: int) -> int | None:
    """Exit status of our own child ``pid`` once it ended (None: still running or not our child)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


# ----------------------------------------------------------------------------- commands
def start(machine: Machine, unit: Unit, *, timeout_s: float = START_TIMEOUT_S,
          clock: Callable[[], float] = time.time) -> list[str]:
    """Start the unit's daemon and wait until it serves; the notes to print on stderr (empty when quiet)."""
    root = machine.root
    if not is_installed(root, RUNTIME_PACKAGE):
        raise SystemctlError(f"Failed to start {unit.service}: Unit {unit.service} not found. (install it: "
                             f"nrt-lab pkg install {RUNTIME_PACKAGE})", 5)
    if _main_pid(root, unit):
        return []  # already active: systemctl start does nothing
    driver = machine.driver()
    if driver is None or driver.loaded is None:
        _write_unit_state(root, unit, result="condition", since=clock(), condition_failed_at=clock())
        _syslog(root, "systemd[1]", f"Condition check resulted in {unit.description} being skipped.", clock())
        return [f"{unit.service}: start condition failed: {CONDITION} was not met (no Neuron driver is loaded; "
                "install it: nrt-lab driver install); the unit stays inactive (dead)"]
    journal = _journal_file(root, unit)
    unlink_state_file(journal)
    env = dict(os.environ, NRT_LAB_ROOT=str(root))
    out = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        proc = subprocess.Popen(_daemon_argv(unit), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    finally:
        os.close(out)
    _syslog(root, "systemd[1]", f"Starting {unit.description}...", clock())
    deadline = time.monotonic() + timeout_s
    code: int | None = None
    result = "exit-code"
    while True:
        code = proc.poll()
        if code is not None:
            break
        if _main_pid(root, unit) == proc.pid:
            _write_unit_state(root, unit, result="success", since=clock(), main_pid=proc.pid)
            _syslog(root, "systemd[1]", f"Started {unit.description}.", clock())
            return []
        if time.monotonic() > deadline:
            proc.kill()
            code = proc.wait()
            result = "timeout"
            break
        time.sleep(_POLL_S)
    for line in _journal_tail(journal):
        _syslog(root, f"neuron-rtd[{proc.pid}]", line, clock())
    status = f"status={code}/FAILURE" if code >= 0 else f"signal={signal.Signals(-code).name[3:]}"
    _syslog(root, "systemd[1]", f"{unit.service}: Main process exited, code="
            f"{'exited' if code >= 0 else 'killed'}, {status}", clock())
    _syslog(root, "systemd[1]", f"Failed to start {unit.description}.", clock())
    _write_unit_state(root, unit, result=result, since=clock(), main_pid=proc.pid, exit_code=code)
    why = "a timeout was exceeded" if result == "timeout" else "the control process exited with error code"
    raise SystemctlError(
        f"Job for {unit.service} failed because {why}.\n"
        f'See "nrt-lab systemctl status {unit.service}" and {root / "log" / "syslog"} for details.', 1)


def _journal_tail(journal: Path) -> list[str]:
    try:
        with open(os.open(journal, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
            handle.seek(max(0, journal.stat().st_size - _JOURNAL_TAIL_BYTES))
            data = handle.read(_JOURNAL_TAIL_BYTES)
    except OSError:
        return []
    text = data.decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.strip()][-20:]


def stop(machine: Machine, unit: Unit, *, timeout_s: float = STOP_TIMEOUT_S,
         clock: Callable[[], float] = time.time) -> None:
    """SIGTERM the unit's daemon and wait for it to go (SIGKILL after ``timeout_s``, like TimeoutStopSec)."""
    root = machine.root
    if not is_installed(root, RUNTIME_PACKAGE) and not _main_pid(root, unit):
        raise SystemctlError(f"Failed to stop {unit.service}: Unit {unit.service} not loaded.", 5)
    pid = _main_pid(root, unit)
    if not pid:
        with contextlib.suppress(StateError):
            unlink_state_file(pid_file(root, unit.instance))
        state = _read_unit_state(root, unit)
        if state.get("result") == "success":
            _write_unit_state(root, unit, result="dead", since=clock())
        return
    _syslog(root, "systemd[1]", f"Stopping {unit.description}...", clock())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout_s):
        _syslog(root, "systemd[1]", f"{unit.service}: State 'stop-sigterm' timed out. Killing.", clock())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, timeout_s)
    with contextlib.suppress(StateError):
        unlink_state_file(pid_file(root, unit.instance))
    _syslog(root, "systemd[1]", f"Stopped {unit.description}.", clock())
    _write_unit_state(root, unit, result="dead", since=clock(), main_pid=pid)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pid)
        if not _pid_alive(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)


def restart(machine: Machine, unit: Unit, *, clock: Callable[[], float] = time.time) -> list[str]:
    """Stop (if running) then start."""
    stop(machine, unit, clock=clock)
    return start(machine, unit, clock=clock)


def read_status(machine: Machine, unit: Unit, *, lines: int = 10) -> UnitStatus:
    """The unit's status now: package installed, daemon running, last start result, last log lines."""
    root = machine.root
    loaded = is_installed(root, RUNTIME_PACKAGE)
    state = _read_unit_state(root, unit)
    pid = _main_pid(root, unit)
    since = state.get("since") if isinstance(state.get("since"), (int, float)) else None
    raw_pid = state.get("main_pid")
    last_pid = raw_pid if isinstance(raw_pid, int) else 0
    if pid:
        status = UnitStatus(unit, loaded, "active", "running", since if last_pid == pid else None, pid)
    elif state.get("result") in ("exit-code", "timeout", "signal"):
        code = state.get("exit_code") if isinstance(state.get("exit_code"), int) else None
        status = UnitStatus(unit, loaded, "failed", "failed", since, last_pid, code, result=str(state["result"]))
    elif state.get("result") == "condition":
        status = UnitStatus(unit, loaded, "inactive", "dead", None, 0, condition_failed_at=since)
    elif last_pid and state.get("result") == "success":  # the daemon died without systemctl stop
        status = UnitStatus(unit, loaded, "failed", "failed", since, last_pid, None, result="signal")
    else:
        status = UnitStatus(unit, loaded, "inactive", "dead", since, last_pid)
    wanted = pid or status.main_pid
    return UnitStatus(**{**status.__dict__, "log_lines": tuple(_log_lines(root, unit, wanted, lines))})


def _log_lines(root: Path, unit: Unit, pid: int, count: int) -> list[str]:
    path = root / "log" / "syslog"
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            handle.seek(max(0, size - _LOG_TAIL_BYTES))
            text = handle.read(_LOG_TAIL_BYTES).decode("utf-8", "replace")
    except OSError:
        return []
    needles = [f" systemd[1]: {verb} {unit.description}{end}" for verb in ("Starting", "Started", "Stopping",
               "Stopped", "Failed to start") for end in (".", "...")]
    needles += [f" systemd[1]: {unit.service}: ", f" systemd[1]: Condition check resulted in {unit.description} "]
    if pid:
        needles += [f" nrtd[{pid}]: ", f" neuron-rtd[{pid}]: "]
    picked = [line for line in text.splitlines() if any(n in line for n in needles)]
    return picked[-count:] if count > 0 else []


def format_ago(seconds: float) -> str:
    """systemd's relative time: ``5s ago``, ``2min 3s ago``, ``1h 2min ago``, ``3 days ago``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}min {s % 60}s ago" if s % 60 else f"{s // 60}min ago"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}min ago" if s % 3600 // 60 else f"{s // 3600}h ago"
    days = s // 86400
    return f"{days} day{'s' if days != 1 else ''} {s % 86400 // 3600}h ago"


def _when(stamp: float, now: float, tz: _dt.tzinfo | None) -> str:
    moment = _dt.datetime.fromtimestamp(stamp, tz).astimezone(tz)
    return f"{moment.strftime('%a %Y-%m-%d %H:%M:%S %Z')}; {format_ago(now - stamp)}"


def render_status(status: UnitStatus, now: float, tz: _dt.tzinfo | None = None) -> str:
    """``systemctl status`` text for ``status`` at time ``now`` (``tz``: None for local time)."""
    unit = status.unit
    if not status.loaded and status.active != "active":
        return f"Unit {unit.service} could not be found.\n"
    mark = "●" if status.active != "inactive" else "○"
    lines = [f"{mark} {unit.service} - {unit.description}"]
    if status.loaded:
        lines.append(f"   Loaded: loaded ({unit.unit_file}; enabled; vendor preset: enabled)")
    else:
        lines.append(f"   Loaded: not-found (Reason: aws-neuron-runtime was removed; {unit.unit_file} is gone)")
    since = f" since {_when(status.since, now, tz)}" if status.since is not None else ""
    if status.active == "active":
        lines.append(f"   Active: active (running){since}")
        lines.append(f" Main PID: {status.main_pid} (neuron-rtd)")
        lines.append(f"   CGroup: /system.slice/{unit.service}")
        lines.append(f"           └─{status.main_pid} {' '.join(unit.exec_start())}")
    elif status.active == "failed":
        lines.append(f"   Active: failed (Result: {status.result}){since}")
        if status.main_pid:
            how = (f"code=exited, status={status.exit_code}/FAILURE" if status.exit_code is not None
                   and status.exit_code >= 0 else
                   f"code=killed, signal={signal.Signals(-status.exit_code).name[3:]}"
                   if status.exit_code is not None else "code=killed")
            lines.append(f"  Process: {status.main_pid} ExecStart={' '.join(unit.exec_start())} ({how})")
            lines.append(f" Main PID: {status.main_pid} ({how})")
    else:
        lines.append(f"   Active: inactive (dead){since}")
        if status.condition_failed_at is not None:
            lines.append(f"Condition: start condition failed at {_when(status.condition_failed_at, now, tz)}")
            lines.append(f"           └─ {CONDITION} was not met")
    text = "\n".join(lines) + "\n"
    if status.log_lines:
        text += "\n" + "\n".join(status.log_lines) + "\n"
    return text


# ----------------------------------------------------------------------------- command line
def add_parser(sub: Any) -> None:
    """Register ``systemctl start|stop|restart|status UNIT...`` on the ``nrt-lab`` sub-parsers object."""
    ctl = sub.add_parser("systemctl", help="start, stop, restart or show the neuron-rtd units (Runtime 1.x)")
    ctl.add_argument("action", choices=("start", "stop", "restart", "status"), help="what to do")
    ctl.add_argument("units", nargs="+", metavar="UNIT", help="neuron-rtd or neuron-rtd@<instance>")
    ctl.add_argument("-n", "--lines", type=int, default=10, help="status: log lines to show (default 10)")


def run(args: argparse.Namespace, root: Path | None = None, now: Callable[[], float] = time.time) -> int:
    """Run a parsed ``nrt-lab systemctl`` command with systemctl's exit statuses (status: 0 running, 3 not
    running, 4 no such unit; start/stop: 0 done, 1 failed, 5 no such unit)."""
    if args.lines < 0:
        sys.stderr.write(f"nrt-lab systemctl: error: --lines {args.lines}: accepted: 0 or more\n")
        return 2
    machine = open_machine(root)
    worst = 0
    for text in args.units:
        try:
            unit = parse_unit(text)
            if args.action == "status":
                status = read_status(machine, unit, lines=args.lines)
                sys.stdout.write(render_status(status, now()))
                code = 0 if status.active == "active" else (4 if not status.loaded else 3)
                worst = worst or code
                continue
            notes: list[str] = []
            if args.action == "start":
                notes = start(machine, unit, clock=now)
            elif args.action == "stop":
                stop(machine, unit, clock=now)
            else:
                notes = restart(machine, unit, clock=now)
            for note in notes:
                sys.stderr.write(note + "\n")
        except SystemctlError as exc:
            if args.action == "status" and exc.status == 5:
                sys.stdout.write(f"Unit {text} could not be found.\n")
                worst = worst or 4
                continue
            sys.stderr.write(f"{exc}\n")
            worst = worst or exc.status
    return worst

