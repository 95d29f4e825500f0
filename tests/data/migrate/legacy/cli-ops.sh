#!/bin/bash
neuron-cli list-model
neuron-cli list-ncg
neuron-cli reset
