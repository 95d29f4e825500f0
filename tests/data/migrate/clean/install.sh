#!/bin/bash
sudo apt-get install -y aws-neuronx-dkms aws-neuronx-tools
sudo modprobe neuron
neuron-top --help
