"""libnrt's log: line layout, levels, and console / syslog / file destinations per component.

Lines look like ``2025-Sep-19 18:57:20.813269  4444:4444  ERROR   NRT:nrt_infodump      …`` (docs/behaviour.md,
"log format"). The documentation gives the layout as ``"%s %5d:%-5d %5s %4s:%-40s%s"`` but its own sample
(and libnrt's real lines) put three spaces between ``ERROR`` and ``NRT``; we follow the sample, i.e. the
module is right-aligned in 5 columns.

Destinations follow the runtime's documented defaults (docs/behaviour.md, "log destinations"): every line at
INFO and above goes to the emulated syslog (``<root>/log/syslog``) and lines at ERROR and above to the console
(stderr); :func:`route` holds the whole rule, including the level/location variables and their per-component
overrides.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import os
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nrt_lab.driver.state import append_state_text
from nrt_lab.errors import ConfigError, printable

__all__ = [
    "LogLevel",
    "LogSettings",
    "NrtLogger",
    "Route",
    "route",
    "COMPONENTS",
    "CONSOLE",
    "SYSLOG",
    "DEFAULT_CONSOLE_LEVEL",
    "DEFAULT_SYSLOG_LEVEL",
    "format_line",
    "format_syslog_line",
    "parse_log_settings",
]

COMPONENTS = ("NRT", "NMGR", "TDRV")


class LogLevel(enum.IntEnum):
    """Severity, lowest first; QUIET silences a stream entirely."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    QUIET = 5


_LEVEL_NAMES = {
    "TRACE": LogLevel.TRACE,
    "DEBUG": LogLevel.DEBUG,
    "INFO": LogLevel.INFO,
    "WARN": LogLevel.WARN,
    "WARNING": LogLevel.WARN,
    "ERROR": LogLevel.ERROR,
    "QUIET": LogLevel.QUIET,
}
_ACCEPTED_LEVELS = "ERROR, WARNING (or WARN), INFO, DEBUG, TRACE, QUIET (case-insensitive)"


#: The two fixed location names; any other location (per component only) is a file path.
CONSOLE = "console"
SYSLOG = "syslog"
#: Thresholds of the two default destinations when no level is set: syslog "verbose", console "error-only".
DEFAULT_SYSLOG_LEVEL = LogLevel.INFO
DEFAULT_CONSOLE_LEVEL = LogLevel.ERROR


@dataclass(frozen=True)
class Route:
    """Where one component's lines go: the console from ``console_level`` and ``target`` from ``target_level``.

    ``target`` is ``"syslog"``, a file path, or None (console only). ``fallback``: the user named ``target``
    explicitly, so a line that cannot be written there goes to the console instead of being lost.
    """

    console_level: LogLevel
    target: str | None
    target_level: LogLevel
    fallback: bool

    def to_console(self, level: LogLevel) -> bool:
        """Whether a line of ``level`` is printed on the console (stderr)."""
        return level < LogLevel.QUIET and level >= self.console_level

    def to_target(self, level: LogLevel) -> bool:
        """Whether a line of ``level`` is written to ``target``."""
        return self.target is not None and LogLevel.QUIET > level >= self.target_level

    def describe(self) -> str:
        """For people: e.g. ``syslog from INFO, console from ERROR`` (``QUIET`` when nothing is written)."""
        parts = [] if self.target is None else [f"{self.target} from {self.target_level.name}"]
        if self.console_level < LogLevel.QUIET:
            parts.append(f"{CONSOLE} from {self.console_level.name}")
        return ", ".join(parts) or LogLevel.QUIET.name

    @property
    def threshold(self) -> LogLevel:
        """The lowest level written anywhere (QUIET: nothing is)."""
        return min(self.console_level, self.target_level if self.target is not None else LogLevel.QUIET)


def route(level: LogLevel | None, location: str | None) -> Route:
    """The destinations for a level and a location as set by the user (None: not set); docs/behaviour.md.

    * nothing set: syslog from INFO and console from ERROR ("verbose" syslog, "error-only" console);
    * a level L alone: both destinations from L (``INFO`` shows INFO on the console too);
    * ``console``: the console only, from L (default ERROR);
    * ``syslog`` or a file path: that destination only, from L (default INFO), but ERROR lines still reach
      the console;
    * ``QUIET``: nothing anywhere, errors included.
    """
    if level == LogLevel.QUIET:
        return Route(LogLevel.QUIET, None, LogLevel.QUIET, False)
    # "is None", not "or": TRACE is 0
    console = DEFAULT_CONSOLE_LEVEL if level is None else level
    verbose = DEFAULT_SYSLOG_LEVEL if level is None else level
    if location is None:
        return Route(console, SYSLOG, verbose, False)
    if location == CONSOLE:
        return Route(console, None, LogLevel.QUIET, False)
    return Route(LogLevel.ERROR, location, verbose, True)


@dataclass(frozen=True)
class LogSettings:
    """The log variables as set (None: unset): the default level/location and the per-component overrides.

    Modules without overrides of their own (HAL, ENC) follow the defaults.
    """

    default_level: LogLevel | None = None
    default_location: str | None = None
    levels: Mapping[str, LogLevel] = field(default_factory=dict)
    locations: Mapping[str, str] = field(default_factory=dict)

    def level_of(self, module: str) -> LogLevel | None:
        """Level set for ``module`` (its own variable first, then NEURON_RT_LOG_LEVEL); None when unset."""
        return self.levels.get(module, self.default_level)

    def location_of(self, module: str) -> str | None:
        """Location set for ``module``: ``console``, ``syslog``, a file path, or None when unset."""
        return self.locations.get(module, self.default_location)

    def route_of(self, module: str) -> Route:
        """Where ``module``'s lines go."""
        return route(self.level_of(module), self.location_of(module))

    def describe(self) -> str:
        """For people: the default destinations, then each component that differs (``; TDRV: …``)."""
        default = self.route_of("")
        text = default.describe()
        for component in COMPONENTS:
            own = self.route_of(component)
            if own != default:
                text += f"; {component}: {own.describe()}"
        return text

    @property
    def uses_syslog(self) -> bool:
        """Whether some module's lines may go to the emulated syslog (so the logger needs its path)."""
        modules = (*COMPONENTS, "")  # "": any other module, which follows the defaults
        return any(self.route_of(module).target == SYSLOG for module in modules)


def _parse_level(variable: str, value: str) -> LogLevel:
    text = value.strip()
    level = _LEVEL_NAMES.get(text.upper()) if text.isascii() else None  # "ınfo".upper() is "INFO"
    if level is None:
        raise ConfigError(variable, value, "unknown log level", _ACCEPTED_LEVELS)
    return level


def _parse_location(variable: str, value: str, allow_path: bool) -> str:
    text = value.strip()
    if text.isascii() and text.lower() in (CONSOLE, SYSLOG):
        return text.lower()
    if allow_path and text and "\x00" not in text:
        return text
    accepted = "console, syslog or a file path" if allow_path else "console or syslog"
    raise ConfigError(variable, value, "unknown log location", accepted)


def parse_log_settings(env: Mapping[str, str]) -> LogSettings:
    """Read NEURON_RT_LOG_LEVEL/LOCATION and their _NRT/_NMGR/_TDRV overrides; malformed → ConfigError."""
    default_level = None
    default_location = None
    if "NEURON_RT_LOG_LEVEL" in env:
        default_level = _parse_level("NEURON_RT_LOG_LEVEL", env["NEURON_RT_LOG_LEVEL"])
    if "NEURON_RT_LOG_LOCATION" in env:
        default_location = _parse_location("NEURON_RT_LOG_LOCATION", env["NEURON_RT_LOG_LOCATION"], False)
    levels: dict[str, LogLevel] = {}
    locations: dict[str, str] = {}
    for component in COMPONENTS:
        level_var = f"NEURON_RT_LOG_LEVEL_{component}"
        location_var = f"NEURON_RT_LOG_LOCATION_{component}"
        if level_var in env:
            levels[component] = _parse_level(level_var, env[level_var])
        if location_var in env:
            locations[component] = _parse_location(location_var, env[location_var], True)
    return LogSettings(default_level, default_location, levels, locations)


def _timestamp(now: _dt.datetime) -> str:
    return now.strftime("%Y-%b-%d %H:%M:%S.") + f"{now.microsecond:06d}"


def format_line(level: LogLevel, module: str, function: str, message: str, *, pid: int, tid: int,
                now: _dt.datetime | None = None) -> str:
    """One console/file line in libnrt's layout."""
    stamp = _timestamp(now or _dt.datetime.now())
    # printf layout kept on purpose: it is libnrt's own format string (docs/behaviour.md, "log format").
    return "%s %5d:%-5d %5s %5s:%-40s%s" % (stamp, pid, tid, level.name, module, function, message)  # noqa: UP031


def format_syslog_line(level: LogLevel, module: str, function: str, message: str, *, pid: int, tid: int,
                       now: _dt.datetime | None = None) -> str:
    """One line of the emulated syslog: the syslog header, then libnrt's ``NRT:  pid:tid LEVEL  MOD:fn  msg``."""
    stamp = (now or _dt.datetime.now()).strftime("%b %d %H:%M:%S")
    body = "NRT: %6d:%-5d %-6s%5s:%s  %s" % (pid, tid, level.name, module, function, message)  # noqa: UP031
    return f"{stamp} {socket.gethostname()} nrt[{pid}]: {body}"


def _append_line(path: str | Path, line: str) -> None:
    """Append one line to the log file or syslog at ``path`` (the one place that opens log files): created 0600,
    never through a link or into a FIFO, whatever the umask."""
    append_state_text(Path(path), line + "\n")


class NrtLogger:
    """Writes libnrt log lines where the settings say; thread-safe, cheap when a level is filtered out."""

    def __init__(self, settings: LogSettings, syslog_path: Path | None) -> None:
        self.settings = settings
        self.syslog_path = syslog_path  # None: no machine to hold a syslog (its lines are dropped)
        self._guard = threading.Lock()
        self._routes = {module: settings.route_of(module) for module in COMPONENTS}
        self._default_route = settings.route_of("")

    def route_of(self, module: str) -> Route:
        """Where ``module``'s lines go."""
        return self._routes.get(module, self._default_route)

    def enabled(self, level: LogLevel, module: str) -> bool:
        """Whether a line of ``level`` from ``module`` would be written anywhere."""
        return LogLevel.QUIET > level >= self.route_of(module).threshold

    def log(self, level: LogLevel, module: str, function: str, message: str) -> None:
        """Write one line to each destination that takes it (or nothing when filtered)."""
        where = self.route_of(module)
        to_console = where.to_console(level)
        to_target = where.to_target(level)
        if not (to_console or to_target):
            return
        message = printable(message)
        pid, tid = os.getpid(), threading.get_native_id()
        now = _dt.datetime.now()
        console_line = format_line(level, module, function, message, pid=pid, tid=tid, now=now)
        with self._guard:
            if to_target and not self._write_target(where.target, level, module, function, message, console_line,
                                                    pid=pid, tid=tid, now=now):
                # Logging never raises: a location the user named that cannot be written falls back to the
                # console, so that a failure (or success) of the runtime is never lost or turned into an OSError.
                to_console = to_console or where.fallback
            if to_console:
                stream = sys.stderr
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.write(console_line + "\n")
                        stream.flush()

    def _write_target(self, target: str | None, level: LogLevel, module: str, function: str, message: str,
                      console_line: str, *, pid: int, tid: int, now: _dt.datetime) -> bool:
        """Write to the syslog or the file ``target``; False when it cannot be written."""
        if target == SYSLOG:
            if self.syslog_path is None:
                return False
            path: str | Path = self.syslog_path
            line = format_syslog_line(level, module, function, message, pid=pid, tid=tid, now=now)
        elif target is not None:
            path, line = target, console_line
        else:
            return False
        try:
            _append_line(path, line)
        except (OSError, ValueError):
            return False
        return True

    def error(self, module: str, function: str, message: str) -> None:
        """Log at ERROR."""
        self.log(LogLevel.ERROR, module, function, message)

    def warn(self, module: str, function: str, message: str) -> None:
        """Log at WARN."""
        self.log(LogLevel.WARN, module, function, message)

    def info(self, module: str, function: str, message: str) -> None:
        """Log at INFO."""
        self.log(LogLevel.INFO, module, function, message)

    def debug(self, module: str, function: str, message: str) -> None:
        """Log at DEBUG."""
        self.log(LogLevel.DEBUG, module, function, message)
