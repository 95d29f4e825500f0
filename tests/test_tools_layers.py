"""The tools are faces: they read through ``nrt_lab.monitor`` and use only the top level of ``nrt_lab.driver`` /
``nrt_lab.runtime`` (write-side admin commands), never their submodules; and they start fast (no runtime,
no textual, no prometheus_client where a tool does not need them)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import nrt_lab.tools

TOOLS = Path(nrt_lab.tools.__file__).parent
_INTERNAL = ("nrt_lab.driver.", "nrt_lab.runtime.", "nrt_lab.kernels", "nrt_lab.neff.")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


@pytest.mark.parametrize("path", sorted(TOOLS.glob("*.py")), ids=lambda p: p.name)
def test_tools_import_no_driver_or_runtime_internals(path: Path) -> None:
    internal = [name for name in _imports(path) if name.startswith(_INTERNAL)]
    assert internal == [], f"{path.name} imports {internal}: use nrt_lab.monitor or the package top level"


def _modules_loaded_by(code: str) -> set[str]:
    script = f"import sys\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_neuron_ls_and_the_exporter_load_no_runtime_textual_or_kernels() -> None:
    loaded = _modules_loaded_by("import nrt_lab.tools.neuron_ls")
    assert not {"nrt_lab.runtime", "nrt_lab.kernels", "ml_dtypes", "textual", "prometheus_client"} & loaded
    loaded = _modules_loaded_by("import nrt_lab.tools.prometheus")
    assert not {"nrt_lab.runtime", "nrt_lab.driver", "numpy", "textual"} & loaded
    loaded = _modules_loaded_by("import nrt_lab.tools.neuron_top")
    assert "textual" not in loaded  # the --once and --help paths draw with rich only
