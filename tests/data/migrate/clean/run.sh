#!/bin/bash
# Runtime 2.x: nothing to start; pick the cores per process.
export NEURON_RT_VISIBLE_CORES=0-3
export NEURON_RT_LOG_LEVEL=INFO
neuron-ls
python infer.py
