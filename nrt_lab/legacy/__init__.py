"""Runtime 1.x: the ``neuron-rtd`` daemon and what surrounded it (packages, systemctl, neuron-cli, the 1.x client)
and the tools that walk a user out of it (docs/legacy.md)."""

__all__: list[str] = []
