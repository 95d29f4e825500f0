"""NRT_STATUS codes of libnrt 2.x and the exceptions that carry them: the leaf every layer may import.

Every failure of the emulated runtime is an :class:`NrtError` whose ``status`` is one of these numbers, so code
ported from C can compare against the same constants. This module imports nothing of nrt_lab's (docs/architecture.md).
"""

from __future__ import annotations

import enum

__all__ = ["NrtStatus", "NrtError", "ConfigError", "status_description", "printable", "shown_value", "SHOWN_VALUE_LIMIT",
           "SHOWN_VALUE_HEAD"]


class NrtStatus(enum.IntEnum):
    """The NRT_STATUS enumeration with the exact numbers of nrt_status.h."""

    SUCCESS = 0
    FAILURE = 1
    INVALID = 2
    INVALID_HANDLE = 3
    RESOURCE = 4
    TIMEOUT = 5
    HW_ERROR = 6
    QUEUE_FULL = 7
    LOAD_NOT_ENOUGH_NC = 9
    UNSUPPORTED_NEFF_VERSION = 10
    FAIL_HOST_MEM_ALLOC = 11
    UNINITIALIZED = 13
    CLOSED = 14
    QUEUE_EMPTY = 15
    EXEC_UNIT_UNRECOVERABLE = 101
    EXEC_BAD_INPUT = 1002
    EXEC_COMPLETED_WITH_NUM_ERR = 1003
    EXEC_COMPLETED_WITH_ERR = 1004
    EXEC_NC_BUSY = 1005
    EXEC_OOB = 1006
    COLL_PENDING = 1100
    EXEC_HW_ERR_COLLECTIVES = 1200
    EXEC_HW_ERR_HBM_UE = 1201
    EXEC_HW_ERR_NC_UE = 1202
    EXEC_HW_ERR_DMA_ABORT = 1203
    EXEC_SW_NQ_OVERFLOW = 1204
    EXEC_HW_ERR_REPAIRABLE_HBM_UE = 1205
    NETWORK_PROXY_FAILURE = 1206

    @property
    def c_name(self) -> str:
        """The C identifier, e.g. ``NRT_EXEC_BAD_INPUT``."""
        return f"NRT_{self.name}"


_DESCRIPTIONS: dict[NrtStatus, str] = {
    NrtStatus.SUCCESS: "Success",
    NrtStatus.FAILURE: "Non specific failure",
    NrtStatus.INVALID: "Invalid NEFF, instruction, DMA descriptor or input tensor name/size",
    NrtStatus.INVALID_HANDLE: "Invalid handle",
    NrtStatus.RESOURCE: "Failed to allocate a resource for the requested operation",
    NrtStatus.TIMEOUT: "Operation timed out",
    NrtStatus.HW_ERROR: "Hardware failure",
    NrtStatus.QUEUE_FULL: "Not enough space in the execution input queue",
    NrtStatus.LOAD_NOT_ENOUGH_NC: "Failed to allocate enough NeuronCores for loading the model",
    NrtStatus.UNSUPPORTED_NEFF_VERSION: "Unsupported NEFF version",
    NrtStatus.FAIL_HOST_MEM_ALLOC: "Failed to allocate host memory",
    NrtStatus.UNINITIALIZED: "Neuron runtime is not initialized",
    NrtStatus.CLOSED: "Neuron runtime is closed",
    NrtStatus.QUEUE_EMPTY: "Queue is empty",
    NrtStatus.EXEC_UNIT_UNRECOVERABLE: "Execution unit is in an unrecoverable state",
    NrtStatus.EXEC_BAD_INPUT: "Invalid input has been submitted to execution",
    NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR: "Execution was completed with numerical errors (produced NaN)",
    NrtStatus.EXEC_COMPLETED_WITH_ERR: "Execution was completed with other errors",
    NrtStatus.EXEC_NC_BUSY: "The NeuronCore is locked (in use) by another model/thread",
    NrtStatus.EXEC_OOB: "Execution was completed with out-of-bound access",
    NrtStatus.COLL_PENDING: "Collective operation is still pending",
    NrtStatus.EXEC_HW_ERR_COLLECTIVES: "Execution stalled due to a hardware error or a hang in collectives",
    NrtStatus.EXEC_HW_ERR_HBM_UE: "Execution failed due to an uncorrectable HBM memory error",
    NrtStatus.EXEC_HW_ERR_NC_UE: "Execution failed due to an uncorrectable NeuronCore SRAM error",
    NrtStatus.EXEC_HW_ERR_DMA_ABORT: "Execution failed due to a DMA abort",
    NrtStatus.EXEC_SW_NQ_OVERFLOW: "Execution failed due to a software notification queue overflow",
    NrtStatus.EXEC_HW_ERR_REPAIRABLE_HBM_UE: "Execution failed due to a repairable uncorrectable HBM memory error",
    NrtStatus.NETWORK_PROXY_FAILURE: "Network proxy failure",
}


def status_description(status: int) -> str:
    """The text ``nrt_get_status_as_str`` returns for ``status`` (unknown numbers are named as such)."""
    try:
        return _DESCRIPTIONS[NrtStatus(status)]
    except ValueError:
        return f"Unknown status {status}"


class NrtError(RuntimeError):
    """A runtime failure carrying its NRT_STATUS; ``str()`` reads like nrtpy's ``NRT Error NRT_X(n): msg``."""

    def __init__(self, status: NrtStatus | int, message: str) -> None:
        self.status = NrtStatus(status)
        self.message = message
        super().__init__(f"NRT Error {self.status.c_name}({int(self.status)}): {message}")


_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return _NAMED_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else
                                      f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u202e``), other Unicode kept.

    Owner records, tags, commands and environment values come from other processes and files: shown raw they
    could move a terminal's cursor, clear its screen or reorder text (bidi overrides). Every face and every log
    line shows such text through this one function.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


SHOWN_VALUE_LIMIT = 200  # a longer value is shown as its first SHOWN_VALUE_HEAD characters and its length
SHOWN_VALUE_HEAD = 40


def shown_value(value: str) -> str:
    """``repr(value)``, or ``'<first 40 characters>'… (N characters)`` for a value over 200 characters."""
    if len(value) <= SHOWN_VALUE_LIMIT:
        return repr(value)
    return f"{value[:SHOWN_VALUE_HEAD]!r}… ({len(value)} characters)"


class ConfigError(ValueError):
    """A NEURON_* variable holds a value the runtime does not accept; names the variable, value and choices.

    ``value`` keeps the whole value; the message shortens a huge one (:func:`shown_value`).
    """

    def __init__(self, variable: str, value: str, reason: str, accepted: str) -> None:
        self.variable = variable
        self.value = value
        self.reason = reason
        self.accepted = accepted
        super().__init__(f"{variable}={shown_value(value)} is invalid: {reason}; accepted: {accepted}")
