"""Write the tutorial notebooks from the cell lists below (run after editing; outputs are left empty)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01-getting-started": [
        ("md", """# 01 — Getting started with Neuron Runtime 2.x (emulated)

Neuron Runtime 2.x is a library, `libnrt.so`, linked into your application. When the application starts, the
runtime **claims NeuronCores**; when it stops, it releases them. A core belongs to one process at a time.

nrt_lab emulates the whole stack: an instance with Neuron devices, the `aws-neuronx-dkms` driver, the runtime
and its tools. Nothing here needs AWS hardware. The machine is provisioned on first use as a `trn1.32xlarge`."""),
        ("code", """import nrt_lab

machine = nrt_lab.open_machine()
state = machine.state()
spec = state.instance
print(f"{spec.name}: {len(spec.devices)} devices x {spec.devices[0].core_count} NeuronCores = {spec.total_cores} cores")"""),
        ("md", """## The driver

The runtime refuses to start without a new-enough driver. `nrt-lab driver status` (or the API below) shows the
emulated package and the runtime's verdict: `None` means the runtime can start."""),
        ("code", """from nrt_lab.runtime import driver_gate

driver = machine.driver()
print("installed:", driver.installed, "loaded:", driver.loaded)
print("runtime verdict:", driver_gate(driver))"""),
        ("md", """## Claiming NeuronCores

`nrt_lab.init()` is `nrt_init()`. With no variables it takes **every** core. `NEURON_RT_NUM_CORES` asks for a
number of contiguous cores (first fit), `NEURON_RT_VISIBLE_CORES` for specific ones. The environment is read
at `init()`, so set variables before it. `NEURON_PROCESS_TAG` names the process for the monitoring tools."""),
        ("code", """import os

os.environ["NEURON_RT_NUM_CORES"] = "4"
os.environ["NEURON_PROCESS_TAG"] = "tutorial-01"
rt = nrt_lab.init()
print("owned cores:", rt.cores, "tag:", rt.tag)"""),
        ("md", """## Who owns what: `neuron-ls`

`neuron-ls` lists the devices and the processes using them; `-w` shows full command lines, `-t` the topology,
`-j` JSON (what Ray reads to detect NeuronCores). From a terminal run `neuron-ls -w`; here we call the same code."""),
        ("code", """from nrt_lab.tools.neuron_ls import neuron_ls_output

print(neuron_ls_output(wide=True))"""),
        ("code", """import json

devices = json.loads(neuron_ls_output(as_json=True))
print("NeuronCores Ray would detect:", sum(d["nc_count"] for d in devices))
print("devices used by this kernel:", [d["neuron_device"] for d in devices if d["neuron_processes"]])"""),
        ("md", """## Releasing the cores

`close()` is `nrt_close()`: the cores are free for other processes at once. Calling it twice is harmless, and
`init()` after `close()` reads the environment again."""),
        ("code", """rt.close()
rt.close()  # idempotent
print("runtime after close:", nrt_lab.get_runtime())
print("owners now:", [o.pid for o in machine.owners()])"""),
    ],
}


def main() -> None:
    """Write every notebook in NOTEBOOKS into notebooks/."""
    out = Path(__file__).resolve().parent.parent / "notebooks"
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
        for index, cell in enumerate(nb.cells):
            cell["id"] = f"{name[:2]}-{index:02d}"
        nbformat.write(nb, out / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()
