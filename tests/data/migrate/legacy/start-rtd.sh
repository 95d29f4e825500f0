#!/bin/bash
set -e
sudo systemctl start neuron-rtd
sudo systemctl status neuron-rtd --no-pager
python infer.py
