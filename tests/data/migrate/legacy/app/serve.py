import os
import subprocess

from nrt_lab.legacy import Client

os.environ["NEURONCORE_GROUP_SIZES"] = "4"
subprocess.run(["neuron-cli", "list-ncg"], check=True)
client = Client()
