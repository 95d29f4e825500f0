"""The configuration error shared by the runtime's parsers (kept apart to avoid import cycles)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A NEURON_* variable holds a value the runtime does not accept; names the variable, value and choices."""

    def __init__(self, variable: str, value: str, reason: str, accepted: str) -> None:
        self.variable = variable
        self.value = value
        self.reason = reason
        self.accepted = accepted
        super().__init__(f"{variable}={value!r} is invalid: {reason}; accepted: {accepted}")
