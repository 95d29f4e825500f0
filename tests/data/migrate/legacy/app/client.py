import os

import grpc
import nmgr_service_pb2_grpc

os.environ.setdefault("NEURON_RTD_ADDRESS", "unix:/run/neuron.sock")
channel = grpc.insecure_channel(os.environ["NEURON_RTD_ADDRESS"])
stub = nmgr_service_pb2_grpc.nmgr_v1Stub(channel)
