#!/bin/sh
# upgrade the Neuron packages, then restart the daemon
sudo apt-get install -y aws-neuron-dkms aws-neuron-runtime-base aws-neuron-runtime aws-neuron-tools
sudo service neuron-rtd restart
