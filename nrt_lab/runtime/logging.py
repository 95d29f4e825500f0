"""libnrt's log: SPEC §4 line layout, levels, and console / syslog / file locations per component.

Lines look like ``2025-Sep-19 18:57:20.813269  4444:4444  ERROR   NRT:nrt_infodump      …``. SPEC gives the
layout as ``"%s %5d:%-5d %5s %4s:%-40s%s"`` but its own sample (and libnrt's real lines) put three spaces
between ``ERROR`` and ``NRT``; we follow the sample, i.e. the module is right-aligned in 5 columns.
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
from nrt_lab.errors import ConfigError

__all__ = [
    "LogLevel",
    "LogSettings",
    "NrtLogger",
    "COMPONENTS",
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


@dataclass(frozen=True)
class LogSettings:
    """Resolved level and location for each component; other modules (HAL, ENC) use the defaults."""

    default_level: LogLevel = LogLevel.ERROR
    default_location: str = "console"
    levels: Mapping[str, LogLevel] = field(default_factory=dict)
    locations: Mapping[str, str] = field(default_factory=dict)

    def level_of(self, module: str) -> LogLevel:
        """Effective level of ``module``."""
        return self.levels.get(module, self.default_level)

    def location_of(self, module: str) -> str:
        """Effective location of ``module``: ``console``, ``syslog`` or a file path."""
        return self.locations.get(module, self.default_location)


def _parse_level(variable: str, value: str) -> LogLevel:
    try:
        return _LEVEL_NAMES[value.strip().upper()]
    except KeyError:
        raise ConfigError(variable, value, "unknown log level", _ACCEPTED_LEVELS) from None


def _parse_location(variable: str, value: str, allow_path: bool) -> str:
    text = value.strip()
    if text.lower() in ("console", "syslog"):
        return text.lower()
    if allow_path and text and "\x00" not in text:
        return text
    accepted = "console, syslog or a file path" if allow_path else "console or syslog"
    raise ConfigError(variable, value, "unknown log location", accepted)


def parse_log_settings(env: Mapping[str, str]) -> LogSettings:
    """Read NEURON_RT_LOG_LEVEL/LOCATION and their _NRT/_NMGR/_TDRV overrides; malformed → ConfigError."""
    default_level = LogLevel.ERROR
    default_location = "console"
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
    # printf layout kept on purpose: it is libnrt's own format string (SPEC §4).
    return "%s %5d:%-5d %5s %5s:%-40s%s" % (stamp, pid, tid, level.name, module, function, message)  # noqa: UP031


def format_syslog_line(level: LogLevel, module: str, function: str, message: str, *, pid: int, tid: int,
                       now: _dt.datetime | None = None) -> str:
    """One line of the emulated syslog: the syslog header, then libnrt's ``NRT:  pid:tid LEVEL  MOD:fn  msg``."""
    stamp = (now or _dt.datetime.now()).strftime("%b %d %H:%M:%S")
    body = "NRT: %6d:%-5d %-6s%5s:%s  %s" % (pid, tid, level.name, module, function, message)  # noqa: UP031
    return f"{stamp} {socket.gethostname()} nrt[{pid}]: {body}"


class NrtLogger:
    """Writes libnrt log lines where the settings say; thread-safe, cheap when a level is filtered out."""

    def __init__(self, settings: LogSettings, syslog_path: Path | None) -> None:
        self.settings = settings
        self.syslog_path = syslog_path
        self._guard = threading.Lock()

    def enabled(self, level: LogLevel, module: str) -> bool:
        """Whether a line of ``level`` from ``module`` would be written anywhere."""
        threshold = self.settings.level_of(module)
        return threshold != LogLevel.QUIET and level >= threshold

    def log(self, level: LogLevel, module: str, function: str, message: str) -> None:
        """Write one line (or nothing when filtered)."""
        if not self.enabled(level, module):
            return
        pid, tid = os.getpid(), threading.get_native_id()
        now = _dt.datetime.now()
        location = self.settings.location_of(module)
        console_line = format_line(level, module, function, message, pid=pid, tid=tid, now=now)
        with self._guard:
            # Logging never raises: a location that cannot be written falls back to the console, so that a
            # failure (or success) of the runtime is never turned into an OSError by its own log line.
            try:
                if location == "syslog" and self.syslog_path is not None:
                    line = format_syslog_line(level, module, function, message, pid=pid, tid=tid, now=now)
                    append_state_text(self.syslog_path, line + "\n")  # 0600, never through a link or a FIFO
                    return
                if location not in ("console", "syslog"):
                    with open(location, "a", encoding="utf-8") as fh:
                        fh.write(console_line + "\n")
                    return
            except OSError:
                pass
            stream = sys.stderr
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.write(console_line + "\n")
                    stream.flush()

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
