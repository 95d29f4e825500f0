#!/bin/sh
# Regenerate the committed Python modules of the emulated neuron-rtd's gRPC interface (nrt_lab/legacy/proto/*.proto)
# so installing nrt_lab needs no build step. Run from the repository root with grpcio-tools installed.
set -eu
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
    nrt_lab/legacy/proto/nrt_v1.proto nrt_lab/legacy/proto/nrt_lab_ext.proto
