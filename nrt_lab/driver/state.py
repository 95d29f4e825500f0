"""The emulated machine's state root: where it lives, its safety checks, and the one safe way to its files.

One machine is one directory (docs/architecture.md, "The emulated machine"). The root is opened once and held
(O_DIRECTORY|O_NOFOLLOW, owner and mode checked on the descriptor); every file below it is created, opened,
renamed and deleted relative to directory descriptors with O_NOFOLLOW, created 0600 (directories 0700)
whatever the umask, and read only when it is a regular file, with a size bound. Everything that changes a
state file is written atomically (temp file + rename) so a crash or a concurrent reader never sees half a file;
temp files embed their writer's pid so the ones a SIGKILL left behind are removed on the next start.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrt_lab.hardware import InstanceSpec, get_instance

__all__ = [
    "DEFAULT_INSTANCE",
    "StateError",
    "MachineState",
    "resolve_root",
    "ensure_root",
    "SUBDIRS",
    "JSON_LIMIT",
    "state_dir",
    "UnsafeStateFileError",
    "open_in_dir",
    "open_state_file",
    "unlink_state_file",
    "list_state_dir",
    "make_state_dir",
    "reset_state_dir",
    "write_state_bytes",
    "append_state_text",
    "temp_name",
    "temp_writer_pid",
    "remove_stale_temp_files",
    "atomic_write_json",
    "read_state_bytes",
    "parse_state_json",
    "read_state_json",
    "read_json_file",
    "read_machine",
    "write_machine",
    "new_instance_id",
]

DEFAULT_INSTANCE = "trn1.32xlarge"
MACHINE_SCHEMA_VERSION = 1


class StateError(Exception):
    """The state root or one of its files is unusable; the message names the path and the remedy."""


@dataclass(frozen=True)
class MachineState:
    """Contents of machine.json: the emulated instance and its identity."""

    instance: InstanceSpec
    instance_id: str
    created: float

    def instance_at(self, lnc: int | None) -> InstanceSpec:
        """The instance seen with ``lnc`` (None: the machine's own LNC); ValueError for an LNC it lacks."""
        if lnc is None or lnc == self.instance.lnc:
            return self.instance
        return get_instance(self.instance.name, lnc)

    def to_json(self) -> dict[str, Any]:
        """The on-disk form of machine.json."""
        return {
            "schema_version": MACHINE_SCHEMA_VERSION,
            "instance_type": self.instance.name,
            "lnc": self.instance.lnc,
            "instance_id": self.instance_id,
            "created": self.created,
            "instance": self.instance.to_json(),
        }


_PATH_MAX = 4096  # Linux PATH_MAX: longer paths cannot be opened
_NAME_MAX = 255
_ROOT_ACCEPTED = "an absolute or relative path of a directory owned by you with mode 0700 (created if missing)"


def _check_root_value(variable: str, value: str) -> None:
    """Refuse a malformed root path from the environment, naming the variable and what is accepted."""
    shown = value if len(value) <= 200 else value[:200] + "…"
    problem = ""
    if "\x00" in value:
        problem = "contains a NUL character"
    elif len(value.encode("utf-8", "surrogateescape")) >= _PATH_MAX:
        problem = f"is longer than {_PATH_MAX - 1} bytes"
    elif any(len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX for part in value.split("/")):
        problem = f"has a path component longer than {_NAME_MAX} bytes"
    if problem:
        raise StateError(f"{variable}={shown!r} is invalid: the path {problem}; accepted: {_ROOT_ACCEPTED}")


def resolve_root(env: Mapping[str, str] | None = None) -> Path:
    """The state root: ``NRT_LAB_ROOT``, else ``$XDG_STATE_HOME/nrt_lab``, else ``~/.local/state/nrt_lab``.

    A set but empty ``NRT_LAB_ROOT`` means "not set" (as for the ``NEURON_RT_*`` variables); a malformed one
    (NUL, over-long) is a StateError naming the variable.
    """
    env = os.environ if env is None else env
    explicit = env.get("NRT_LAB_ROOT", "")
    if explicit:
        _check_root_value("NRT_LAB_ROOT", explicit)
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg:
        _check_root_value("XDG_STATE_HOME", xdg)
        return Path(xdg).expanduser().absolute() / "nrt_lab"
    return Path.home() / ".local" / "state" / "nrt_lab"


# ------------------------------------------------------------------------------------------------ the held root
# The state root is opened once (O_DIRECTORY|O_NOFOLLOW), checked on the descriptor, and every file below it is
# reached relative to that descriptor one component at a time with O_NOFOLLOW: a root swapped for a symbolic link
# after the check, or a link planted inside it (procs, locks, log/syslog ...), is refused, never followed.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_MODE = 0o600
_DIR_MODE = 0o700


@dataclass
class _HeldRoot:
    """An open, checked root directory; ``users`` operations are using ``fd`` right now."""

    fd: int
    dev: int
    ino: int
    users: int = 0
    retired: bool = False  # replaced or evicted: closed once its last user is done


_MAX_HELD = 16  # roots kept open at once (a test session opens hundreds); others are reopened and rechecked
_known: set[str] = set()  # every root ever checked: paths below them are always reached through a held root
_held: OrderedDict[str, _HeldRoot] = OrderedDict()
_held_guard = threading.Lock()
_warned_repairs: set[str] = set()

SUBDIRS = ("locks", "procs", "log", "faults", "rtd")


def _symlink_error(path: Path | str) -> StateError:
    return StateError(f"state path {path} is a symbolic link (or not a directory where one is needed); refusing to "
                      "follow it; accepted: real files and directories inside the state root (remove the link)")


def _check_root_stat(path: Path, st: os.stat_result) -> None:
    """The checks on the root's own status (done on the open descriptor, so they hold for what we use)."""
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"state root {path} is not a directory; accepted: a directory owned by you with mode 0700")
    if st.st_uid != os.getuid():
        raise StateError(
            f"state root {path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
            "accepted: a directory owned by you with mode 0700"
        )
    if st.st_mode & 0o022:
        raise StateError(
            f"state root {path} has unsafe permissions {stat.S_IMODE(st.st_mode):04o} (writable by group or others); "
            f"accepted: 0700 (fix with: chmod 700 {path})"
        )


def _open_root(path: Path) -> _HeldRoot:
    """Open and check the root directory itself (it exists); StateError when it is unusable."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StateError(f"state root {path} cannot be examined ({exc.strerror or exc}); accepted: {_ROOT_ACCEPTED}; "
                         "set NRT_LAB_ROOT to such a path") from None
    if stat.S_ISLNK(st.st_mode):
        raise StateError(f"state root {path} is a symbolic link; accepted: a real directory owned by you with mode 0700")
    if not stat.S_ISDIR(st.st_mode):
        _check_root_stat(path, st)
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StateError(f"state root {path} is a symbolic link; accepted: a real directory owned by you with "
                             "mode 0700") from None
        raise StateError(f"state root {path} cannot be opened ({exc.strerror or exc}); accepted: {_ROOT_ACCEPTED}") \
            from None
    try:
        st = os.fstat(fd)
        _check_root_stat(path, st)
        if st.st_mode & 0o077:
            # Readable by group or others: the owner records (command lines) would be visible to other users.
            os.fchmod(fd, _DIR_MODE)
            if str(path) not in _warned_repairs:
                _warned_repairs.add(str(path))
                sys.stderr.write(f"nrt-lab: warning: state root {path} had permissions "
                                 f"{stat.S_IMODE(st.st_mode):04o}; changed to 0700 (owner records are private)\n")
    except BaseException:
        os.close(fd)
        raise
    return _HeldRoot(fd, st.st_dev, st.st_ino)


def _retire(held: _HeldRoot) -> None:
    """Stop handing out ``held`` and close it as soon as nobody uses it (caller holds the guard)."""
    held.retired = True
    if held.users == 0:
        os.close(held.fd)


def _acquire(path: Path) -> _HeldRoot:
    """The held descriptor of the root at ``path``, (re)opened and rechecked when the directory there changed;
    the caller gives it back with :func:`_release` (a replaced root's descriptor is closed only then)."""
    key = str(path)
    held = _held.get(key)
    if held is not None:
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            st = None
        if (st is not None and st.st_ino == held.ino and st.st_dev == held.dev and stat.S_ISDIR(st.st_mode)
                and st.st_uid == os.getuid() and not st.st_mode & 0o077):
            with _held_guard:  # same directory, still private: the checks made on the descriptor still hold
                if _held.get(key) is held:
                    held.users += 1
                    _held.move_to_end(key)
                    return held
    fresh = _open_root(path)  # first use, a replaced directory, or changed owner/mode: check again
    with _held_guard:
        old = _held.get(key)
        if old is not None and (old.dev, old.ino) == (fresh.dev, fresh.ino):
            os.close(fresh.fd)
            old.users += 1
            _held.move_to_end(key)
            return old
        if old is not None:
            _retire(old)
        fresh.users = 1
        _held[key] = fresh
        _known.add(key)
        while len(_held) > _MAX_HELD:
            _retire(_held.popitem(last=False)[1])
    return fresh


def _release(held: _HeldRoot) -> None:
    with _held_guard:
        held.users -= 1
        if held.retired and held.users == 0:
            os.close(held.fd)


def ensure_root(root: Path) -> Path:
    """Create the state root (0700) and its sub-directories if missing, check they are safe, and hold it open."""
    try:
        return _ensure_root(root)
    except StateError:
        raise
    except OSError as exc:  # the root changed under us while it was being set up
        raise StateError(f"state root {root} cannot be used ({exc.strerror or exc}); accepted: {_ROOT_ACCEPTED}") \
            from None


def _ensure_root(root: Path) -> Path:
    try:
        root.lstat()
    except (FileNotFoundError, NotADirectoryError):
        try:
            root.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            try:
                root.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                pass  # another process created it first
        except OSError as exc:
            problem = "a parent is not a directory" if isinstance(exc, FileExistsError) else exc.strerror or exc
            raise StateError(f"state root {root} cannot be created ({problem}); accepted: "
                             f"{_ROOT_ACCEPTED}; set NRT_LAB_ROOT to such a path") from None
    except OSError as exc:
        raise StateError(f"state root {root} cannot be examined ({exc.strerror or exc}); accepted: "
                         f"{_ROOT_ACCEPTED}; set NRT_LAB_ROOT to such a path") from None
    held = _acquire(root)
    try:
        for sub in SUBDIRS:
            try:
                os.mkdir(sub, _DIR_MODE, dir_fd=held.fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StateError(f"state directory {root / sub} cannot be created ({exc.strerror or exc})") \
                    from None
            st = os.stat(sub, dir_fd=held.fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                raise _symlink_error(root / sub)
    finally:
        _release(held)
    return root


def _locate(path: Path) -> tuple[_HeldRoot, list[str]] | None:
    """(acquired held root, components below it) when ``path`` lies in a checked root, else None."""
    if not _known:
        return None
    for parent in path.parents:
        key = str(parent)
        if key in _known:
            return _acquire(parent), list(path.relative_to(parent).parts)
    return None


@contextlib.contextmanager
def _parent_dir(path: Path) -> Iterator[tuple[int | None, str]]:
    """(descriptor of the directory holding ``path``, its name), walked with O_NOFOLLOW from the held root.

    Outside any checked root the descriptor is None and the name is the whole path.
    """
    located = _locate(path)
    if located is None:
        yield None, str(path)
        return
    held, parts = located
    fd = held.fd
    opened: list[int] = []
    try:
        for index, part in enumerate(parts[:-1]):
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _symlink_error(path.parents[len(parts) - 2 - index]) from None
                raise
            opened.append(fd)
        yield fd, parts[-1]
    finally:
        for item in opened:
            os.close(item)
        _release(held)


@contextlib.contextmanager
def state_dir(path: Path) -> Iterator[int]:
    """A descriptor of the directory ``path`` inside the state root, reached without following links.

    Use it with ``os.open(name, …, dir_fd=fd)`` for many files of one directory (the core lock files).
    """
    with _parent_dir(path) as (parent, name):
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _symlink_error(path) from None
            raise
    try:
        yield fd
    finally:
        os.close(fd)


def _fix_mode(fd: int, mode: int) -> None:
    """A created file gets exactly ``mode`` whatever the umask (0600 stays private, never wider)."""
    if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
        os.fchmod(fd, mode)


class UnsafeStateFileError(StateError):
    """A state path is a symbolic link or not a regular file; ``reason`` says which (``it is a FIFO``)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"state file {path} cannot be used: {reason}; accepted: a regular file (remove it)")


def open_in_dir(dir_fd: int | None, name: str, flags: int, shown: Path | str, mode: int = _FILE_MODE) -> int:
    """``os.open`` of ``name`` in ``dir_fd`` that never follows a link and only opens regular files.

    A link or a non-regular file (FIFO, device) is refused with an UnsafeStateFileError naming ``shown``; a
    created file is given ``mode`` (0600) whatever the umask.
    """
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeStateFileError(shown, "it is a symbolic link (never followed)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeStateFileError(shown, f"it is {_kind(st.st_mode)}, not a regular file")
        if flags & os.O_CREAT and stat.S_IMODE(st.st_mode) != mode and st.st_uid == os.getuid():
            os.fchmod(fd, mode)
        # O_NONBLOCK stays set: it changes nothing for a regular file (nor for flock).
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_state_file(path: Path, flags: int, mode: int = _FILE_MODE) -> int:
    """Open a file of the state root safely (see :func:`open_in_dir`); caller closes the descriptor."""
    with _parent_dir(path) as (parent, name):
        return open_in_dir(parent, name, flags, path, mode)


def unlink_state_file(path: Path) -> bool:
    """Delete a file of the state root (never through a link in its directories); False when it was missing."""
    try:
        with _parent_dir(path) as (parent, name):
            os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        return False
    return True


def list_state_dir(path: Path) -> list[str]:
    """Names in a directory of the state root ([] when it is missing); a linked directory is a StateError."""
    try:
        with state_dir(path) as fd:
            return os.listdir(fd)
    except FileNotFoundError:
        return []


def make_state_dir(path: Path) -> None:
    """Create a directory of the state root (0700 whatever the umask); FileExistsError when it exists."""
    with _parent_dir(path) as (parent, name):
        os.mkdir(name, _DIR_MODE, dir_fd=parent)
        with contextlib.suppress(OSError):
            os.chmod(name, _DIR_MODE, dir_fd=parent, follow_symlinks=False)


def _remove_tree(parent: int | None, name: str) -> None:
    """Remove a directory tree relative to ``parent`` without following any link (links are unlinked)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for entry in os.listdir(fd):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                    _remove_tree(fd, entry)
                else:
                    os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def reset_state_dir(path: Path) -> None:
    """Empty a directory of the state root (a link planted in its place is removed, never followed)."""
    with _parent_dir(path) as (parent, name):
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                _remove_tree(parent, name)
            else:
                os.unlink(name, dir_fd=parent)
        os.mkdir(name, _DIR_MODE, dir_fd=parent)


def write_state_bytes(path: Path, data: bytes) -> None:
    """Replace a small state file's contents atomically (temp file + rename, 0600, links never followed)."""
    _atomic_write(path, data)


def append_state_text(path: Path, text: str) -> None:
    """Append ``text`` to a log file of the state root (created 0600, never through a link, never a FIFO).

    Raises OSError (a StateError's message inside it for a link or a non-regular file), so callers that must
    never fail on logging keep catching OSError only.
    """
    try:
        fd = open_state_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except StateError as exc:
        raise OSError(errno.EPERM, str(exc)) from None
    try:
        data = text.encode("utf-8", "replace")
        while data:
            written = os.write(fd, data)
            data = data[written:]
    finally:
        os.close(fd)


TEMP_SUFFIX = ".tmp"


def temp_name(name: str) -> str:
    """The temp file name of an atomic write of ``name``: it embeds the writer's pid (stale ones are removable)."""
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def temp_writer_pid(name: str) -> int | None:
    """The pid embedded in a temp file name made by :func:`temp_name` (None for another name)."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    parts = name[: -len(TEMP_SUFFIX)].split(".")
    if len(parts) < 4 or not parts[-2].isascii() or not parts[-2].isdigit():
        return None
    return int(parts[-2])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_UNNAMED_TEMP_AGE_S = 3600.0  # temp files without a pid (earlier versions) are stale after an hour


def remove_stale_temp_files(directory: Path, now: float | None = None) -> int:
    """Delete temp files left by writers that died mid-write (SIGKILL); returns how many were removed.

    A name from :func:`temp_name` carries its writer's pid: removed once that process is gone. A ``.*.tmp``
    name without one (written by an earlier version) is removed when older than an hour.
    """
    removed = 0
    now = time.time() if now is None else now
    for name in list_state_dir(directory):
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        pid = temp_writer_pid(name)
        if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
            continue
        if pid is None:
            try:
                with _parent_dir(directory / name) as (parent, leaf):
                    age = now - os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mtime
            except OSError:
                continue
            if age < _UNNAMED_TEMP_AGE_S:
                continue
        if unlink_state_file(directory / name):
            removed += 1
    return removed


def atomic_write_json(path: Path, data: Mapping[str, Any], *, pretty: bool = False) -> None:
    """Write JSON through a temp file and rename, so readers see the old or the new file, never half.

    Inside the state root the temp file is created 0600 next to ``path`` without following links and renamed
    relative to the directory descriptor. Compact by default: indenting makes the json module fall back to its
    pure-Python encoder. ``pretty`` is for the files people read (machine.json, driver.json).
    """
    text = json.dumps(data, indent=2, sort_keys=True) if pretty else json.dumps(data, separators=(",", ":"))
    _atomic_write(path, (text + "\n").encode("utf-8"))


def _atomic_write(path: Path, payload: bytes) -> None:
    with _parent_dir(path) as (parent, name):
        if parent is None:
            directory, name = str(path.parent), path.name
            parent_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            parent_fd = parent
        try:
            tmp = temp_name(name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, _FILE_MODE,
                         dir_fd=parent_fd)
            try:
                try:
                    _fix_mode(fd, _FILE_MODE)
                    view = memoryview(payload)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                os.replace(tmp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent_fd)
                raise
        finally:
            if parent is None:
                os.close(parent_fd)


# ------------------------------------------------------------------------------------------------ safe reading
JSON_LIMIT = 4 << 20  # bytes: the largest state JSON file we accept (a machine file is ~2 KB)


def read_state_bytes(path: Path, what: str, limit: int = JSON_LIMIT, remedy: str = "") -> bytes | None:
    """The bytes of a state file, at most ``limit``; None when it does not exist.

    Only a regular file is read (opened O_NOFOLLOW|O_NONBLOCK, so a FIFO or a link to /dev/zero never hangs or
    streams without end); anything else is a StateError naming the file and what is accepted.
    """
    try:
        fd = open_state_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except UnsafeStateFileError as exc:
        raise StateError(f"{what} {path} cannot be read: {exc.reason}; accepted: a regular file{remedy}") from None
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise StateError(f"{what} {path} cannot be read: it is a directory, not a regular file; accepted: a "
                             f"regular file{remedy}") from None
        raise StateError(f"{what} {path} cannot be read ({exc.strerror or exc}); accepted: a readable regular "
                         f"file{remedy}") from None
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise StateError(f"{what} {path} is {size} bytes; accepted: at most {limit} bytes{remedy}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise StateError(f"{what} {path} is larger than {limit} bytes; accepted: at most {limit} "
                                 f"bytes{remedy}")
        return b"".join(chunks)
    except OSError as exc:
        raise StateError(f"{what} {path} cannot be read ({exc.strerror or exc}); accepted: a readable regular "
                         f"file{remedy}") from None
    finally:
        os.close(fd)


def parse_state_json(raw: bytes, path: Path, what: str, remedy: str = "") -> dict[str, Any]:
    """A JSON object from a state file's bytes; corruption (bad UTF-8, bad JSON, too deep) is a StateError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError(
            f"{what} {path} is corrupted: not UTF-8 text ({exc.reason}); accepted: a JSON object{remedy}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{what} {path} is corrupted: invalid JSON ({exc.msg} at line {exc.lineno}); "
            f"accepted: a JSON object{remedy}"
        ) from None
    except RecursionError:
        raise StateError(f"{what} {path} is corrupted: JSON nested too deeply; accepted: a JSON object{remedy}") \
            from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise StateError(f"{what} {path} is corrupted: {exc}; accepted: a JSON object{remedy}") from None
    if not isinstance(data, dict):
        raise StateError(f"{what} {path} is corrupted: expected a JSON object, found {type(data).__name__}{remedy}")
    return data


def read_state_json(path: Path, what: str, remedy: str = "", limit: int = JSON_LIMIT) -> dict[str, Any] | None:
    """A state JSON object read safely (:func:`read_state_bytes` + :func:`parse_state_json`); None when missing."""
    raw = read_state_bytes(path, what, limit, remedy)
    return None if raw is None else parse_state_json(raw, path, what, remedy)


def read_json_file(path: Path, what: str, remedy: str = "") -> dict[str, Any]:
    """Read a JSON object, turning any corruption (or absence) into a StateError that names the file."""
    data = read_state_json(path, what, remedy)
    if data is None:
        raise StateError(f"{what} {path} cannot be read (No such file or directory); accepted: a readable JSON "
                         f"file{remedy}")
    return data


def new_instance_id() -> str:
    """A fresh EC2-style instance id (i- plus 17 hex digits)."""
    return "i-0" + secrets.token_hex(8)


def read_machine(root: Path) -> MachineState | None:
    """Parse machine.json strictly; None when it does not exist (machine not provisioned)."""
    path = root / "machine.json"
    remedy = "; re-provision with: nrt-lab machine create --instance NAME"
    data = read_state_json(path, "machine file", remedy)
    if data is None:
        return None
    version = data.get("schema_version")
    if version != MACHINE_SCHEMA_VERSION:
        raise StateError(
            f"machine file {path} has schema_version {version!r}; accepted: {MACHINE_SCHEMA_VERSION}{remedy}"
        )
    name = data.get("instance_type")
    lnc = data.get("lnc")
    instance_id = data.get("instance_id")
    created = data.get("created")
    if not isinstance(name, str):
        raise StateError(f"machine file {path} is corrupted: instance_type is {name!r}, expected a string{remedy}")
    if not isinstance(lnc, int) or isinstance(lnc, bool):
        raise StateError(f"machine file {path} is corrupted: lnc is {lnc!r}, expected 1 or 2{remedy}")
    if not isinstance(instance_id, str) or not instance_id.startswith("i-"):
        raise StateError(f"machine file {path} is corrupted: instance_id is {instance_id!r}, expected 'i-…'{remedy}")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        raise StateError(f"machine file {path} is corrupted: created is {created!r}, expected a number{remedy}")
    try:
        instance = get_instance(name, lnc)
    except ValueError as exc:
        raise StateError(f"machine file {path} is corrupted: {exc}{remedy}") from None
    stored = data.get("instance")
    if stored != instance.to_json():
        raise StateError(
            f"machine file {path} is corrupted: its device description does not match the catalogue entry "
            f"for {name} (lnc {lnc}){remedy}"
        )
    return MachineState(instance=instance, instance_id=instance_id, created=float(created))


def write_machine(root: Path, instance: InstanceSpec, instance_id: str | None = None) -> MachineState:
    """Write machine.json for ``instance`` (a new instance id unless one is given)."""
    state = MachineState(instance=instance, instance_id=instance_id or new_instance_id(), created=time.time())
    atomic_write_json(root / "machine.json", state.to_json(), pretty=True)
    return state
