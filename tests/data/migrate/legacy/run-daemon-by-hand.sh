#!/bin/bash
/opt/aws/neuron/bin/neuron-rtd -g unix:/tmp/neuron.sock -c /opt/aws/neuron/config/neuron-rtd.config &
sleep 2
export NEURON_RTD_ADDRESS=unix:/tmp/neuron.sock
python infer.py
pkill neuron-rtd
