#!/usr/bin/env bash
for i in 0 1 2 3; do
  sudo cp nrtd$i.json /opt/aws/neuron/config/
  sudo systemctl start neuron-rtd@$i
done
NEURON_RTD_ADDRESS=unix:/run/neuron.sock0 python serve.py --group 0 &
NEURON_RTD_ADDRESS=unix:/run/neuron.sock1 python serve.py --group 1 &
wait
