"""NeuronCore allocation with libnrt 2.x semantics over the driver's per-core locks (docs/behaviour.md).

* neither variable set: every core, all or nothing;
* ``NEURON_RT_VISIBLE_CORES``: exactly those (contiguous) cores; it wins over ``NEURON_RT_NUM_CORES``;
* ``NEURON_RT_NUM_CORES=N``: the lowest-index contiguous run of N free cores (first fit).
The choice and the claim happen under the machine-wide allocation lock, so racing processes see a
consistent picture: never two owners of one core, and never a refusal while enough cores were free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nrt_lab.driver import (
    CoreClaim,
    OwnerRecord,
    allocation_lock,
    physical_core_count,
    physical_cores_of,
    probe_free,
    try_claim,
)
from nrt_lab.driver.locks import remove_stale_records
from nrt_lab.errors import ConfigError
from nrt_lab.hardware import InstanceSpec
from nrt_lab.runtime.config import RuntimeConfig

__all__ = [
    "AllocationRequest",
    "CoresBusyError",
    "NotContiguousError",
    "NoCoresVisibleError",
    "plan_request",
    "allocate",
    "largest_free_run",
    "logical_free_map",
    "NOT_CONTIGUOUS_MESSAGE",
    "NO_CORES_VISIBLE_MESSAGE",
    "BUSY_MESSAGE_PREFIX",
    "busy_message",
]

NOT_CONTIGUOUS_MESSAGE = "Neuron cores are not contiguous"
NO_CORES_VISIBLE_MESSAGE = "NEURON_RT_VISIBLE_CORES is empty: no NeuronCore is visible to this process"
BUSY_MESSAGE_PREFIX = "NeuronCore(s) not available - Requested:"


def busy_message(requested: str, available: int) -> str:
    """libnrt's exact busy line: ``NeuronCore(s) not available - Requested:nc1-nc1 Available:0``."""
    return f"{BUSY_MESSAGE_PREFIX}{requested} Available:{available}"


class CoresBusyError(Exception):
    """The requested cores are owned by another process; ``str()`` is libnrt's exact line."""

    def __init__(self, requested: str, available: int) -> None:
        self.requested = requested
        self.available = available
        super().__init__(busy_message(requested, available))


class NotContiguousError(Exception):
    """NEURON_RT_VISIBLE_CORES names a set with a gap."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        super().__init__(NOT_CONTIGUOUS_MESSAGE)


class NoCoresVisibleError(Exception):
    """NEURON_RT_VISIBLE_CORES is set to the empty string."""

    def __init__(self) -> None:
        super().__init__(NO_CORES_VISIBLE_MESSAGE)


@dataclass(frozen=True)
class AllocationRequest:
    """What the process asks for: explicit cores (default / VISIBLE) or a count (NUM_CORES)."""

    cores: tuple[int, ...] | None
    count: int

    def describe(self) -> str:
        """``nc<first>-nc<last>`` for explicit cores, the count otherwise (as libnrt prints it)."""
        if self.cores is None:
            return str(self.count)
        return f"nc{self.cores[0]}-nc{self.cores[-1]}"


def plan_request(config: RuntimeConfig, instance: InstanceSpec) -> AllocationRequest:
    """Turn the variables into a request for ``instance`` (raises ConfigError / NotContiguousError)."""
    total = instance.total_cores
    visible = config.visible_cores
    if visible is not None:
        if not visible.cores:
            raise NoCoresVisibleError()
        out_of_range = [c for c in visible.cores if c >= total]
        if out_of_range:
            raise ConfigError(
                "NEURON_RT_VISIBLE_CORES",
                visible.raw,
                f"NeuronCore {out_of_range[0]} does not exist on {instance.name} ({total} NeuronCores)",
                f"ids and ranges between 0 and {total - 1}",
            )
        if not visible.contiguous:
            raise NotContiguousError(visible.raw)
        return AllocationRequest(cores=visible.cores, count=len(visible.cores))
    if config.num_cores:
        return AllocationRequest(cores=None, count=config.num_cores)
    return AllocationRequest(cores=tuple(range(total)), count=total)


def logical_free_map(instance: InstanceSpec, physical_free: Sequence[bool]) -> list[bool]:
    """A logical core is free when every physical core behind it is free."""
    lnc = instance.lnc
    return [all(physical_free[i * lnc : i * lnc + lnc]) for i in range(instance.total_cores)]


def largest_free_run(free: Sequence[bool]) -> int:
    """Length of the longest run of free cores (libnrt's ``max_range_available``)."""
    best = run = 0
    for is_free in free:
        run = run + 1 if is_free else 0
        best = max(best, run)
    return best


def _first_fit(free: Sequence[bool], count: int) -> tuple[int, ...] | None:
    run = 0
    for index, is_free in enumerate(free):
        run = run + 1 if is_free else 0
        if run == count:
            return tuple(range(index - count + 1, index + 1))
    return None


def allocate(
    root: Path,
    instance: InstanceSpec,
    request: AllocationRequest,
    make_record: Callable[[tuple[int, ...]], OwnerRecord],
) -> tuple[CoreClaim, tuple[int, ...]]:
    """Claim the request's cores atomically machine-wide and publish the owner record made for them.

    The record is published under the allocation lock too, so stale-record cleanup never races it.
    Raises CoresBusyError naming what is left.
    """
    with allocation_lock(root):
        remove_stale_records(root)
        chosen: tuple[int, ...] | None = request.cores
        if chosen is None:
            free = logical_free_map(instance, probe_free(root, physical_core_count(instance)))
            chosen = _first_fit(free, request.count)
        if chosen is not None:
            claim = try_claim(root, physical_cores_of(instance, chosen))
            if claim is not None:
                try:
                    claim.publish(make_record(chosen))
                except BaseException:
                    claim.release()
                    raise
                return claim, chosen
        free = logical_free_map(instance, probe_free(root, physical_core_count(instance)))
        raise CoresBusyError(request.describe(), largest_free_run(free))
