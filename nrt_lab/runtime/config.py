"""Every NEURON_* variable the emulated runtime reads, parsed once into a frozen dataclass, and the one list of
the variables the runtime documents (:data:`KNOWN_VARIABLES`) with the messages logged about them.

Nothing else in nrt_lab reads ``os.environ`` for runtime settings. A malformed value raises
:class:`ConfigError` naming the variable, the value (shortened when huge) and what is accepted; init() turns
it into NRT_FAILURE (docs/behaviour.md). Numbers are ASCII digits only and are bounded before conversion, so
no value reaches Python's int() digit limit or takes unbounded time.
Checks that need the instance (core ids against the core count) live in :mod:`nrt_lab.runtime.allocation`.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from nrt_lab.errors import ConfigError, shown_value
from nrt_lab.runtime.logging import COMPONENTS, LogSettings, parse_log_settings

__all__ = [
    "ConfigError",
    "RuntimeConfig",
    "VisibleCoresSpec",
    "NcgSpec",
    "VariableInfo",
    "VariableStatus",
    "KNOWN_VARIABLES",
    "ASYNC_REMOVED_WARNING",
    "MAX_CORE_ID",
    "MAX_EXEC_TIMEOUT_S",
    "MAX_NCG_GROUPS",
    "MAX_NUM_CORES",
    "MAX_PROCESS_TAG",
    "closest_known_variable",
    "ncg_conflict",
    "ncg_deprecation_warning",
    "parse_visible_cores",
    "parse_ncg",
    "parse_bool",
]

MAX_PROCESS_TAG = 255  # NEURON_PROCESS_TAG, in characters
MAX_CORE_ID = 65535
MAX_NUM_CORES = 65536
MAX_NCG_GROUPS = 4096
MAX_EXEC_TIMEOUT_S = 1e9  # ~31 years: beyond this a wait's timeout overflows the platform's limit
_MAX_NUMBER_TEXT = 64  # a number written with more characters than this is refused before any conversion


_VISIBLE_ACCEPTED = "comma-separated NeuronCore ids and inclusive ranges, in any order (e.g. 0-3, 3,1,2 or 0-1,2)"
_ITEM_RE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")  # ASCII digits only: int() accepts Unicode digits too


def _small_int(digits: str, maximum: int) -> int | None:
    """``digits`` (ASCII, leading zeros allowed) as an int, or None above ``maximum``.

    Never calls int() on more digits than ``maximum`` has, so a value of thousands of digits cannot reach
    Python's integer-conversion limit (a raw ValueError) or cost time.
    """
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(maximum)):
        return None
    value = int(significant)
    return value if value <= maximum else None


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
    ranges: list[tuple[int, int]] = []
    for item in text.split(","):
        part = item.strip()
        match = _ITEM_RE.match(part)
        if not match:
            what = "an empty item" if part == "" else f"{shown_value(part)} is not an id or a range of ids"
            raise ConfigError(variable, raw, what, _VISIBLE_ACCEPTED)
        written = [group for group in match.groups() if group is not None]
        ids = [_small_int(group, MAX_CORE_ID) for group in written]
        first, last = ids[0], ids[-1]
        if first is None or last is None:
            bad = written[0] if first is None else written[-1]
            shown = bad if len(bad) <= 12 else f"of {len(bad)} digits"
            raise ConfigError(variable, raw, f"id {shown} is out of range (at most {MAX_CORE_ID})", _VISIBLE_ACCEPTED)
        if last < first:
            raise ConfigError(variable, raw, f"range {shown_value(part)} runs backwards", _VISIBLE_ACCEPTED)
        ranges.append((first, last))
    # Merged as ranges, not expanded item by item: thousands of "0-65535" items stay cheap.
    cores: list[int] = []
    end = -1  # every id ≤ end is already in cores
    for first, last in sorted(ranges):
        if last > end:
            cores.extend(range(max(first, end + 1), last + 1))
            end = last
    return VisibleCoresSpec(raw=raw, cores=tuple(cores))


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
        count, size = _small_int(match.group(1), MAX_NCG_GROUPS), _small_int(match.group(2), MAX_NUM_CORES)
        if count is None or size is None:
            raise ConfigError("NEURONCORE_GROUP_SIZES", raw,
                              f"at most {MAX_NCG_GROUPS} groups of at most {MAX_NUM_CORES} cores", _NCG_ACCEPTED)
        if count < 1 or size < 1:
            raise ConfigError("NEURONCORE_GROUP_SIZES", raw, "group count and size must be ≥ 1", _NCG_ACCEPTED)
        return NcgSpec(raw=raw, sizes=(size,) * count)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > MAX_NCG_GROUPS:
        raise ConfigError("NEURONCORE_GROUP_SIZES", raw, f"{len(parts)} groups (at most {MAX_NCG_GROUPS})",
                          _NCG_ACCEPTED)
    sizes = [_small_int(p, MAX_NUM_CORES) if re.fullmatch(r"[0-9]+", p) else None for p in parts]
    if not text or any(size is None or size < 1 for size in sizes):
        raise ConfigError("NEURONCORE_GROUP_SIZES", raw, "not a list of positive group sizes", _NCG_ACCEPTED)
    return NcgSpec(raw=raw, sizes=tuple(size or 0 for size in sizes))


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
    """A whole number in ASCII digits between ``minimum`` and ``maximum``; anything else → ConfigError."""
    text = raw.strip()
    if not re.fullmatch(r"[+]?[0-9]+", text):
        raise ConfigError(variable, raw, "not a whole number", accepted)
    value = _small_int(text.lstrip("+"), maximum)
    if value is None or value < minimum:
        shown = str(value) if value is not None else "the number"
        raise ConfigError(variable, raw, f"{shown} is out of range", accepted)
    return value


_NUM_CORES_ACCEPTED = f"a whole number of NeuronCores from 0 to {MAX_NUM_CORES} (0 means all)"
_DECIMAL_RE = re.compile(r"[+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _parse_seconds(variable: str, raw: str) -> float:
    """A positive decimal number of seconds (ASCII: ``30``, ``2.5``, ``1e3``), at most MAX_EXEC_TIMEOUT_S."""
    accepted = f"a positive number of seconds up to {MAX_EXEC_TIMEOUT_S:.0f} (e.g. 30 or 600)"
    text = raw.strip()
    if len(text) > _MAX_NUMBER_TEXT:
        raise ConfigError(variable, raw, f"{len(text)} characters long (at most {_MAX_NUMBER_TEXT})", accepted)
    if not _DECIMAL_RE.fullmatch(text):
        raise ConfigError(variable, raw, "not a number", accepted)
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(variable, raw, "must be a positive, finite number", accepted)
    if value > MAX_EXEC_TIMEOUT_S:
        raise ConfigError(variable, raw, "is too large", accepted)
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
                "NEURON_RT_NUM_CORES", env["NEURON_RT_NUM_CORES"], 0, MAX_NUM_CORES,
                _NUM_CORES_ACCEPTED,
            )
        elif "NEURON_RT_NUM_CORES" in env:
            raise ConfigError("NEURON_RT_NUM_CORES", env["NEURON_RT_NUM_CORES"], "empty",
                              _NUM_CORES_ACCEPTED)

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
        if len(tag) > MAX_PROCESS_TAG:
            raise ConfigError("NEURON_PROCESS_TAG", tag, f"{len(tag)} characters long",
                              f"at most {MAX_PROCESS_TAG} printable characters")
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


# ------------------------------------------------------------------------------------------------ messages
# Each message the runtime logs about a variable, defined once: init() logs them, the troubleshooting rules
# (monitor) quote them as the symptom a user will see.

ASYNC_REMOVED_WARNING = (
    "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS was removed in Neuron SDK 2.32 and is ignored; "
    "use nrt_lab's asynchronous execution API instead"
)


def ncg_deprecation_warning(raw: str) -> str:
    """The WARNING init() logs whenever NEURONCORE_GROUP_SIZES is set (to ``raw``)."""
    return (f"NEURONCORE_GROUP_SIZES={raw} is deprecated (no effect since Neuron 1.20) and is ignored; "
            "use NEURON_RT_VISIBLE_CORES or NEURON_RT_NUM_CORES to choose NeuronCores instead")


def ncg_conflict(config: RuntimeConfig, mxnet: bool) -> str | None:
    """Why NEURONCORE_GROUP_SIZES conflicts with the allocation variables (init fails), or None.

    The documented transition rules: NCG unset when NEURON_RT_NUM_CORES is used; with TensorFlow/PyTorch
    its total at most the visible cores; with MXNet never together with NEURON_RT_VISIBLE_CORES.
    """
    ncg = config.ncg
    if ncg is None:
        return None
    if config.num_cores:
        return (f"NEURONCORE_GROUP_SIZES={ncg.raw} cannot be combined with NEURON_RT_NUM_CORES="
                f"{config.num_cores}; unset NEURONCORE_GROUP_SIZES")
    visible = config.visible_cores
    if visible is not None and mxnet:
        return (f"NEURONCORE_GROUP_SIZES={ncg.raw} cannot be combined with NEURON_RT_VISIBLE_CORES with MXNet; "
                "unset NEURONCORE_GROUP_SIZES")
    if visible is not None and ncg.total > len(visible.cores):
        return (f"NEURONCORE_GROUP_SIZES={ncg.raw} needs {ncg.total} NeuronCores but NEURON_RT_VISIBLE_CORES="
                f"{visible.raw} makes {len(visible.cores)} visible; unset NEURONCORE_GROUP_SIZES or make its "
                "total ≤ the visible cores")
    return None


# ------------------------------------------------------------------------------------------------ known variables

VariableStatus = Literal["read", "accepted", "legacy", "deprecated", "removed"]


@dataclass(frozen=True)
class VariableInfo:
    """One documented variable: its default, what it does, and how nrt_lab treats it.

    ``status``: ``read`` (the emulator acts on it), ``accepted`` (documented; no effect in the emulator),
    ``legacy`` (old name, still honoured), ``deprecated`` (ignored with a WARNING), ``removed`` (ignored with
    a WARNING). ``instead`` names what to use instead, when something should be.
    """

    name: str
    default: str
    meaning: str
    status: VariableStatus
    instead: str = ""


def _variables(*infos: VariableInfo) -> Mapping[str, VariableInfo]:
    return MappingProxyType({info.name: info for info in infos})


#: Every variable of the runtime's documentation (allocation, logging, load/execution, collectives,
#: profiling, core dumps, misc, containers), by name. Any other ``NEURON_RT_*`` name is not a variable
#: the runtime knows (probably a typo: see :func:`closest_known_variable`).
KNOWN_VARIABLES: Mapping[str, VariableInfo] = _variables(
    # NeuronCore allocation
    VariableInfo("NEURON_RT_VISIBLE_CORES", "(all)", "NeuronCores this process claims: ids and ranges, contiguous",
                 "read"),
    VariableInfo("NEURON_RT_NUM_CORES", "0", "claim that many free contiguous NeuronCores (0: all)", "read"),
    VariableInfo("NEURON_LOGICAL_NC_CONFIG", "(instance)", "physical NeuronCores per logical NeuronCore (1 or 2)",
                 "read"),
    VariableInfo("NEURON_RT_VIRTUAL_CORE_SIZE", "1", "legacy name of NEURON_LOGICAL_NC_CONFIG", "legacy",
                 "NEURON_LOGICAL_NC_CONFIG"),
    VariableInfo("NEURONCORE_GROUP_SIZES", "", "NeuronCore groups (frameworks, Neuron 1.x): no effect since 1.20",
                 "deprecated", "NEURON_RT_VISIBLE_CORES or NEURON_RT_NUM_CORES"),
    VariableInfo("AWS_NEURON_VISIBLE_DEVICES", "", "Neuron devices exposed to a container", "accepted"),
    # logging
    VariableInfo("NEURON_RT_LOG_LEVEL", "(INFO to syslog, ERROR to console)",
                 "ERROR, WARNING, INFO, DEBUG, TRACE or QUIET for every destination", "read"),
    VariableInfo("NEURON_RT_LOG_LOCATION", "(syslog and console)", "console or syslog", "read"),
    *(VariableInfo(f"NEURON_RT_LOG_LEVEL_{c}", "(NEURON_RT_LOG_LEVEL)", f"log level of the {c} component", "read")
      for c in COMPONENTS),
    *(VariableInfo(f"NEURON_RT_LOG_LOCATION_{c}", "(NEURON_RT_LOG_LOCATION)",
                   f"console, syslog or a file path for the {c} component", "read") for c in COMPONENTS),
    # load / execution
    VariableInfo("NEURON_RT_EXEC_TIMEOUT", "(30 s on inf1, 600 s elsewhere)", "seconds before an execution fails "
                 "with NRT_TIMEOUT", "read"),
    VariableInfo("NEURON_RT_VALIDATE_HASH", "FALSE", "check the NEFF header hash at load", "read"),
    VariableInfo("NEURON_RT_MULTI_INSTANCE_SHARED_WEIGHTS", "FALSE", "model instances share weights", "accepted"),
    VariableInfo("NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS", "0", "non-blocking execution (removed in SDK 2.32; "
                 "setting it only logs a WARNING)", "removed", "nrt_lab's asynchronous execution API"),
    VariableInfo("NEURON_RT_ALLOW_LEGACY_NEFF", "FALSE", "run trn1 NEFFs on trn2", "accepted"),
    VariableInfo("NEURON_RT_STOCHASTIC_ROUNDING_EN", "0", "stochastic rounding (read at load)", "accepted"),
    VariableInfo("NEURON_RT_STOCHASTIC_ROUNDING_SEED", "", "seed of stochastic rounding", "accepted"),
    VariableInfo("NEURON_RT_RESET_CORES", "1", "reset the claimed NeuronCores at init", "read"),
    VariableInfo("NEURON_RT_NUMERICAL_ERRORS_VERBOSITY", "none", "critical: NaN results fail the execution", "read"),
    VariableInfo("NEURON_FAIL_ON_NAN", "0", "1: NaN results fail the execution", "read"),
    VariableInfo("NEURON_RT_ENABLE_DGE_NOTIFICATIONS", "0", "DGE notifications (on: risk of NRT_EXEC_SW_NQ_OVERFLOW)",
                 "accepted"),
    VariableInfo("NEURON_RT_DBG_DUMP_INPUTS_ON_ERR", "0", "dump the inputs of an execution failing with that status",
                 "accepted"),
    VariableInfo("NEURON_RT_DEBUG_MEMLOG_MAX_SIZE", "1048576", "size of the allocation log dumped on OOM", "accepted"),
    VariableInfo("NEURON_RT_CONTIGUOUS_SCRATCHPAD", "(on)", "64 MB scratchpad pages", "accepted"),
    VariableInfo("NEURON_SCRATCHPAD_PAGE_SIZE", "512", "scratchpad page size in MB when not contiguous", "accepted"),
    VariableInfo("NEURON_RT_ENABLE_DEVICE_MEMORY_OOM_LOG", "", "log device memory on OOM", "accepted"),
    *(VariableInfo(f"NEURON_RT_PROFILE_BUF_{kind}_MB", "", f"profiler {kind.lower()} buffer size in MB", "accepted")
      for kind in ("EVENT", "DMA", "THROTTLE", "CC_CORE_INSTRUCTION", "CC_CORE_EVENT")),
    # collectives
    VariableInfo("NEURON_RT_ROOT_COMM_ID", "", "ip:port of the collectives root", "accepted"),
    VariableInfo("NEURON_RT_ONE_THREAD_PER_CORE", "", "collectives: one thread per NeuronCore", "accepted"),
    VariableInfo("NEURON_RT_RANKS_PER_NETWORK_PROXY", "", "collectives: ranks per network proxy", "accepted"),
    VariableInfo("NEURON_RT_LOW_LATENCY_TASKS_CPU_AFFINITY", "", "collectives: CPU affinity of low-latency tasks",
                 "accepted"),
    *(VariableInfo(f"NEURON_RT_ULTRASERVER_{part}", "", f"UltraServer {part.lower().replace('_', ' ')}", "accepted")
      for part in ("MODE", "SERVER_ID", "NODE_ID")),
    VariableInfo("FI_EFA_FORK_SAFE", "", "EFA fork safety (kernels before 5.15)", "accepted"),
    # profiling
    VariableInfo("NEURON_RT_INSPECT_ENABLE", "0", "profiling on", "accepted"),
    VariableInfo("NEURON_RT_INSPECT_OUTPUT_DIR", "./output", "where profiles are written", "accepted"),
    VariableInfo("NEURON_RT_INSPECT_SYSTEM_PROFILE", "1", "system profile", "accepted"),
    VariableInfo("NEURON_RT_INSPECT_DEVICE_PROFILE", "0", "device profile: 0, 1/model or session", "accepted"),
    VariableInfo("NEURON_RT_INSPECT_ON_FAIL", "", "profile failing executions", "accepted"),
    VariableInfo("NEURON_RT_INSPECT_EVENT_FILTER_NC", "", "NeuronCores to profile (0,2,4 or 0-3)", "accepted"),
    VariableInfo("NEURON_RT_INSPECT_EVENT_FILTER_TYPE", "", "event types to profile", "accepted"),
    VariableInfo("NEURON_RT_INSPECT_SYS_TRACE_MAX_EVENTS_PER_NC", "1000000", "trace events kept per NeuronCore",
                 "accepted"),
    # core dumps and misc
    VariableInfo("NEURON_RT_LOCAL_CORE_DUMP_DIRECTORY", "(temp dir)/neuron-core-dump/dt-%d-cid-%c",
                 "where core dumps are written (\"\" with the S3 prefix \"\": off)", "accepted"),
    VariableInfo("NEURON_RT_S3_CORE_DUMP_PREFIX", "", "S3 prefix for core dumps", "accepted"),
    VariableInfo("NEURON_RT_DEBUG_STREAM_BUFFER_SIZE", "65536", "debug stream buffer (events)", "accepted"),
    VariableInfo("NEURON_PROCESS_TAG", "(the pid)", "tag of this process in neuron-monitor and neuron-ls "
                 f"(at most {MAX_PROCESS_TAG} printable characters)", "read"),
)


def closest_known_variable(name: str) -> str | None:
    """The known variable ``name`` was probably meant to be (None when it is known or nothing is close)."""
    if name in KNOWN_VARIABLES:
        return None
    matches = difflib.get_close_matches(name.upper(), list(KNOWN_VARIABLES), n=1, cutoff=0.85)
    return matches[0] if matches else None
