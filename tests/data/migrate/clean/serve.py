import os

import nrt_lab

os.environ.setdefault("NEURON_RT_NUM_CORES", "1")
rt = nrt_lab.init()
# neuron-top shows this process while it runs
print(rt.visible_nc_count)
