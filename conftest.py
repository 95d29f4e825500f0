"""Suite-wide isolation: every test run gets its own emulated machine, never the user's state root.

Set at import time (before any nbval kernel or subprocess starts) so notebook kernels inherit it too;
tests that need their own machine override NRT_LAB_ROOT per test.
"""

from __future__ import annotations

import os
import tempfile

os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt_lab_suite_")
for _name in [k for k in os.environ if k.startswith("NEURON")]:
    del os.environ[_name]
