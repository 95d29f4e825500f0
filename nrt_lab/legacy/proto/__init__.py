"""Generated gRPC modules of the emulated neuron-rtd (tools/gen_legacy_proto.sh; never edit them by hand)."""

__all__: list[str] = []
