"""Every NEURON_RT_* variable the emulated runtime reads, parsed once into a frozen dataclass.

Nothing else in nrt_lab reads ``os.environ`` for runtime settings. A malformed value raises
:class:`ConfigError` naming the variable, the value and what is accepted (SPEC §0: status NRT_FAILURE).
Checks that need the instance (core ids against the core count) live in :mod:`nrt_lab.runtime.allocation`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from nrt_lab.errors import ConfigError
from nrt_lab.runtime.logging import LogSettings, parse_log_settings

__all__ = [
    "ConfigError",
    "RuntimeConfig",
    "VisibleCoresSpec",
    "NcgSpec",
    "parse_visible_cores",
    "parse_ncg",
    "parse_bool",
]

_MAX_TAG = 255


_VISIBLE_ACCEPTED = "comma-separated NeuronCore ids and inclusive ranges, in any order (e.g. 0-3, 3,1,2 or 0-1,2)"
_ITEM_RE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")  # ASCII digits only: int() rejects some Unicode "digits"


@dataclass(frozen=True)
class VisibleCoresSpec:
    """NEURON_RT_VISIBLE_CORES as written: the sorted, de-duplicated ids (not yet checked against the machine)."""

    raw: str
    cores: tuple[int, ...]  # empty tuple: the variable is set to "" (no core visible)

    @property
    def contiguous(self) -> bool:
        """True when the ids form one run, as libnrt requires."""
        return not self.cores or self.cores[-1] - self.cores[0] + 1 == len(self.cores)


def parse_visible_cores(raw: str, variable: str = "NEURON_RT_VISIBLE_CORES") -> VisibleCoresSpec:
    """Parse ``0``, ``0-2``, ``3,4,5``, ``3-5,6`` or Ray's ``6,5,4``; duplicates merge, order is free."""
    text = raw.strip()
    if text == "":
        return VisibleCoresSpec(raw=raw, cores=())
    cores: set[int] = set()
    for item in text.split(","):
        part = item.strip()
        match = _ITEM_RE.match(part)
        if not match:
            what = "an empty item" if part == "" else f"{part!r} is not an id or a range of ids"
            raise ConfigError(variable, raw, what, _VISIBLE_ACCEPTED)
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ConfigError(variable, raw, f"range {part!r} runs backwards", _VISIBLE_ACCEPTED)
        if last > 65535:
            raise ConfigError(variable, raw, f"id {last} is out of range", _VISIBLE_ACCEPTED)
        cores.update(range(first, last + 1))
    return VisibleCoresSpec(raw=raw, cores=tuple(sorted(cores)))


@dataclass(frozen=True)
class NcgSpec:
    """NEURONCORE_GROUP_SIZES: ``2,4,3,4`` (group sizes) or ``NxM`` (N groups of M cores)."""

    raw: str
    sizes: tuple[int, ...]

    @property
    def total(self) -> int:
        """Cores the groups add up to."""
        return sum(self.sizes)


_NCG_ACCEPTED = "a comma list of positive group sizes (e.g. 2,4,3,4) or NxM (e.g. 4x1)"


def parse_ncg(raw: str) -> NcgSpec:
    """Parse the deprecated NEURONCORE_GROUP_SIZES, which frameworks (not libnrt) used to read."""
    text = raw.strip().lower()
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", text)
    if match:
        count, size = int(match.group(1)), int(match.group(2))
        if count < 1 or size < 1 or count > 4096:
            raise ConfigError("NEURONCORE_GROUP_SIZES", raw, "group count and size must be ≥ 1", _NCG_ACCEPTED)
        return NcgSpec(raw=raw, sizes=(size,) * count)
    parts = [p.strip() for p in text.split(",")]
    if not text or not all(re.fullmatch(r"[0-9]+", p) and int(p) > 0 for p in parts) or len(parts) > 4096:
        raise ConfigError("NEURONCORE_GROUP_SIZES", raw, "not a list of positive group sizes", _NCG_ACCEPTED)
    return NcgSpec(raw=raw, sizes=tuple(int(p) for p in parts))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(variable: str, raw: str) -> bool:
    """TRUE/FALSE, 1/0, yes/no, on/off (case-insensitive)."""
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(variable, raw, "not a boolean", "TRUE or FALSE (also 1/0, yes/no, on/off)")


def _parse_int(variable: str, raw: str, minimum: int, maximum: int, accepted: str) -> int:
    text = raw.strip()
    if not re.fullmatch(r"[+]?[0-9]+", text):
        raise ConfigError(variable, raw, "not a whole number", accepted)
    value = int(text)
    if not minimum <= value <= maximum:
        raise ConfigError(variable, raw, f"{value} is out of range", accepted)
    return value


def _parse_seconds(variable: str, raw: str) -> float:
    accepted = "a positive number of seconds (e.g. 30 or 600)"
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(variable, raw, "not a number", accepted) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(variable, raw, "must be a positive, finite number", accepted)
    return value


@dataclass(frozen=True)
class RuntimeConfig:
    """The runtime's view of its environment, read at ``init`` (and again at the next init after close)."""

    visible_cores: VisibleCoresSpec | None
    num_cores: int | None  # None or 0: not set / all
    ncg: NcgSpec | None
    lnc: int | None  # NEURON_LOGICAL_NC_CONFIG (or the legacy NEURON_RT_VIRTUAL_CORE_SIZE)
    process_tag: str
    exec_timeout_s: float | None  # None: the instance default (30 s on inf1, 600 s elsewhere)
    validate_hash: bool
    numerical_errors: bool | None  # None: default; True: NEURON_FAIL_ON_NAN=1 or VERBOSITY=critical
    async_inflight_set: bool
    reset_cores: bool
    log: LogSettings
    neuron_env: tuple[tuple[str, str], ...]  # every NEURON_* variable, for the infodump

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, pid: int | None = None) -> RuntimeConfig:
        """Parse the variables from ``env`` (default ``os.environ``); raises ConfigError on a bad value."""
        env = dict(os.environ if env is None else env)
        log = parse_log_settings(env)

        visible = None
        if "NEURON_RT_VISIBLE_CORES" in env:
            visible = parse_visible_cores(env["NEURON_RT_VISIBLE_CORES"])

        num_cores = None
        if env.get("NEURON_RT_NUM_CORES", "").strip() != "":
            num_cores = _parse_int(
                "NEURON_RT_NUM_CORES", env["NEURON_RT_NUM_CORES"], 0, 65536,
                "a whole number of NeuronCores ≥ 0 (0 means all)",
            )
        elif "NEURON_RT_NUM_CORES" in env:
            raise ConfigError("NEURON_RT_NUM_CORES", env["NEURON_RT_NUM_CORES"], "empty",
                              "a whole number of NeuronCores ≥ 0 (0 means all)")

        ncg = None
        if "NEURONCORE_GROUP_SIZES" in env:
            ncg = parse_ncg(env["NEURONCORE_GROUP_SIZES"])

        lnc = None
        if "NEURON_LOGICAL_NC_CONFIG" in env:
            lnc = _parse_int("NEURON_LOGICAL_NC_CONFIG", env["NEURON_LOGICAL_NC_CONFIG"], 1, 2, "1 or 2")
        if "NEURON_RT_VIRTUAL_CORE_SIZE" in env:
            legacy = _parse_int("NEURON_RT_VIRTUAL_CORE_SIZE", env["NEURON_RT_VIRTUAL_CORE_SIZE"], 1, 2, "1 or 2")
            if lnc is not None and legacy != lnc:
                raise ConfigError(
                    "NEURON_RT_VIRTUAL_CORE_SIZE", env["NEURON_RT_VIRTUAL_CORE_SIZE"],
                    f"contradicts NEURON_LOGICAL_NC_CONFIG={lnc}", f"unset, or equal to NEURON_LOGICAL_NC_CONFIG ({lnc})",
                )
            lnc = legacy

        tag = env.get("NEURON_PROCESS_TAG", "")
        if len(tag) > _MAX_TAG:
            raise ConfigError("NEURON_PROCESS_TAG", tag[:40] + "…", f"{len(tag)} characters long",
                              f"at most {_MAX_TAG} printable characters")
        if any(not ch.isprintable() for ch in tag):
            raise ConfigError("NEURON_PROCESS_TAG", tag, "contains control characters", "printable characters")
        if tag == "":
            tag = str(os.getpid() if pid is None else pid)

        timeout = None
        if "NEURON_RT_EXEC_TIMEOUT" in env:
            timeout = _parse_seconds("NEURON_RT_EXEC_TIMEOUT", env["NEURON_RT_EXEC_TIMEOUT"])

        validate_hash = False
        if "NEURON_RT_VALIDATE_HASH" in env:
            validate_hash = parse_bool("NEURON_RT_VALIDATE_HASH", env["NEURON_RT_VALIDATE_HASH"])

        numerical: bool | None = None
        if "NEURON_FAIL_ON_NAN" in env:
            numerical = parse_bool("NEURON_FAIL_ON_NAN", env["NEURON_FAIL_ON_NAN"])
        if "NEURON_RT_NUMERICAL_ERRORS_VERBOSITY" in env:
            verbosity = env["NEURON_RT_NUMERICAL_ERRORS_VERBOSITY"].strip().lower()
            if verbosity not in ("critical", "none"):
                raise ConfigError("NEURON_RT_NUMERICAL_ERRORS_VERBOSITY", env["NEURON_RT_NUMERICAL_ERRORS_VERBOSITY"],
                                  "unknown verbosity", "critical or none")
            numerical = verbosity == "critical"

        async_set = env.get("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "").strip() not in ("", "0")

        reset_cores = True
        if "NEURON_RT_RESET_CORES" in env:
            reset_cores = parse_bool("NEURON_RT_RESET_CORES", env["NEURON_RT_RESET_CORES"])

        neuron_env = tuple(sorted((k, v) for k, v in env.items() if k.startswith("NEURON")))
        return cls(
            visible_cores=visible,
            num_cores=num_cores,
            ncg=ncg,
            lnc=lnc,
            process_tag=tag,
            exec_timeout_s=timeout,
            validate_hash=validate_hash,
            numerical_errors=numerical,
            async_inflight_set=async_set,
            reset_cores=reset_cores,
            log=log,
            neuron_env=neuron_env,
        )
