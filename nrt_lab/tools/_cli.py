"""Command-line plumbing shared by every console script (``nrt-lab``, ``neuron-ls``, ``neuron-top``,
``neuron-monitor``, ``neuron-monitor-prometheus``), so that each rule lives in one place.

* argument checkers for argparse (``type=``): periods in seconds, regular expressions, bounded integers;
* :func:`printable` (re-exported from :mod:`nrt_lab.errors`, where the one escaping lives): text written to a
  terminal (owner records carry a process's command line and tag, which anybody can set: raw ESC or BEL bytes
  would drive the reader's terminal);
* :func:`write_output`: stdout writes that end quietly when the reader goes away (``neuron-ls -j | head -1``);
* :func:`error`: the one ``<prog>: error: <message>`` line on stderr;
* :func:`stop_on_signals`: SIGINT/SIGTERM set an event (a clean exit, no traceback);
* :func:`read_small_file`: read a configuration file only when it is a regular file of bounded size (a FIFO,
  ``/dev/zero`` or a directory would hang or exhaust memory).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from nrt_lab.errors import printable

__all__ = [
    "CONFIG_MAX_BYTES",
    "FileRefused",
    "bounded_int",
    "error",
    "interrupt_on_signals",
    "positive_seconds",
    "printable",
    "read_small_file",
    "regex",
    "machine_errors",
    "silence_stdout",
    "stop_on_signals",
    "write_output",
]

CONFIG_MAX_BYTES = 1 << 20  # configuration files are a few hundred bytes; 1 MiB is generous



# ---------------------------------------------------------------------------------------------- argument types


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (``1``, ``0.5``)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid period {text!r}: expected seconds, e.g. 1 or 0.5") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid period {text!r}: must be a positive number of seconds")
    return seconds


def regex(text: str) -> str:
    """argparse type: a valid Python regular expression (returned as given)."""
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {exc}") from None
    return text


def bounded_int(what: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type factory: an integer from ``low`` to ``high`` (no upper bound when None)."""
    accepted = f"an integer from {low} to {high}" if high is not None else f"an integer ≥ {low}"

    def check(text: str) -> int:
        # int() of a string longer than 4,300 digits raises ValueError: refused with the same message.
        if len(text) > 20:
            raise argparse.ArgumentTypeError(f"{text[:20]!r}… is not {what}; accepted: {accepted}")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}; accepted: {accepted}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; accepted: {accepted}")
        return value

    return check


def machine_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the emulated machine cannot be used (state root, environment, files): a tool
    prints them as one error line and exits 1. Imported on call, so ``--help`` never loads the driver."""
    from nrt_lab.driver import StateError
    from nrt_lab.errors import ConfigError, NrtError

    return (StateError, NrtError, ConfigError, OSError)


# ---------------------------------------------------------------------------------------------- output


def error(prog: str, message: str, status: int = 1, stream: TextIO | None = None) -> int:
    """Print ``<prog>: error: <message>`` (control characters escaped) on stderr; returns ``status``."""
    out = stream if stream is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError):
        out.write(f"{prog}: error: {printable(message)}\n")
        out.flush()
    return status


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush after a closed pipe stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def write_output(text: str, stream: TextIO | None = None) -> bool:
    """Write and flush ``text`` on stdout; False (and stdout silenced) when the reader went away."""
    out = stream if stream is not None else sys.stdout
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        if stream is None:
            silence_stdout()
        return False
    return True


@contextlib.contextmanager
def stop_on_signals(on_signal: Callable[[int], None] | None = None) -> Iterator[threading.Event]:
    """While active, SIGINT and SIGTERM set the yielded event (after calling ``on_signal(signum)``) instead of
    raising KeyboardInterrupt or killing the process; the previous handlers are restored on exit."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if on_signal is not None:
            on_signal(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """For a loop blocked in a read: SIGINT and SIGTERM interrupt it and end the block quietly (no traceback);
    the previous handlers are restored on exit."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------------------- files


class FileRefused(OSError):
    """A file that is not a readable regular file of bounded size; the message names it and what is accepted."""


def read_small_file(path: str | os.PathLike[str], what: str, max_bytes: int = CONFIG_MAX_BYTES) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``max_bytes`` bytes, else FileRefused.

    Opened with O_NONBLOCK (a FIFO never blocks the open) and checked with fstat on the open descriptor (no
    race between the check and the read); the read stops one byte past the bound.
    """
    name = os.fspath(path)
    accepted = f"accepted: a regular JSON file of at most {max_bytes} bytes"
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileRefused(f"{what} {name} does not exist; {accepted}") from None
    except OSError as exc:
        raise FileRefused(f"{what} {name} cannot be opened ({exc.strerror or exc}); {accepted}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                    else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                    else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
            raise FileRefused(f"{what} {name} is {kind}; {accepted}")
        if info.st_size > max_bytes:
            raise FileRefused(f"{what} {name} has {info.st_size} bytes; {accepted}")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise FileRefused(f"{what} {name} grew past {max_bytes} bytes while being read; {accepted}")
        return b"".join(chunks)
    except FileRefused:
        raise
    except OSError as exc:
        raise FileRefused(f"{what} {name} cannot be read ({exc.strerror or exc}); {accepted}") from None
    finally:
        os.close(fd)
