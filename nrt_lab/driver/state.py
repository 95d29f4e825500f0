"""The emulated machine's state root: where it lives, its safety checks and its JSON files.

One machine is one directory (DESIGN.md "The emulated machine"). Everything that changes it is written
atomically (temp file + rename) so a crash or a concurrent reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Mapping
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
    "atomic_write_json",
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


def resolve_root(env: Mapping[str, str] | None = None) -> Path:
    """The state root: ``NRT_LAB_ROOT``, else ``$XDG_STATE_HOME/nrt_lab``, else ``~/.local/state/nrt_lab``."""
    env = os.environ if env is None else env
    explicit = env.get("NRT_LAB_ROOT", "")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg:
        return Path(xdg).expanduser().absolute() / "nrt_lab"
    return Path.home() / ".local" / "state" / "nrt_lab"


def _check_safe_dir(path: Path) -> None:
    """Refuse a state directory that another user could tamper with (a symlink, foreign owner, g/o writable)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise StateError(f"state root {path} is a symbolic link; accepted: a real directory owned by you with mode 0700")
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


SUBDIRS = ("locks", "procs", "log", "faults", "rtd")


def ensure_root(root: Path) -> Path:
    """Create the state root (0700) and its sub-directories if missing, after checking it is safe."""
    _check_safe_dir(root)
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            root.mkdir(mode=0o700)
        except FileExistsError:
            pass
        _check_safe_dir(root)
    for sub in SUBDIRS:
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    return root


def atomic_write_json(path: Path, data: Mapping[str, Any], *, pretty: bool = False) -> None:
    """Write JSON through a temp file and rename, so readers see the old or the new file, never half.

    Compact by default: indenting makes the json module fall back to its pure-Python encoder, which made large
    files (the machine-wide counters) cost milliseconds on every init and close. ``pretty`` is for the files
    people read (machine.json, driver.json).
    """
    text = json.dumps(data, indent=2, sort_keys=True) if pretty else json.dumps(data, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_file(path: Path, what: str, remedy: str = "") -> dict[str, Any]:
    """Read a JSON object, turning any corruption into a StateError that names the file (and the remedy)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StateError(
            f"{what} {path} is corrupted: not UTF-8 text ({exc.reason}); accepted: a JSON object{remedy}"
        ) from None
    except OSError as exc:
        raise StateError(
            f"{what} {path} cannot be read ({exc.strerror or exc}); accepted: a readable JSON file{remedy}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{what} {path} is corrupted: invalid JSON ({exc.msg} at line {exc.lineno}); "
            f"accepted: a JSON object{remedy}"
        ) from None
    if not isinstance(data, dict):
        raise StateError(f"{what} {path} is corrupted: expected a JSON object, found {type(data).__name__}{remedy}")
    return data


def new_instance_id() -> str:
    """A fresh EC2-style instance id (i- plus 17 hex digits)."""
    return "i-0" + secrets.token_hex(8)


def read_machine(root: Path) -> MachineState | None:
    """Parse machine.json strictly; None when it does not exist (machine not provisioned)."""
    path = root / "machine.json"
    if not path.exists():
        return None
    remedy = "; re-provision with: nrt-lab machine create --instance NAME"
    data = read_json_file(path, "machine file", remedy)
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
