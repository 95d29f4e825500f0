"""The Binder environment stays in step with the package: Python 3.11, every dependency, JupyterLab."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in requirements if r}


def test_binder_installs_every_dependency_and_the_lab_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["lab"])
    lines = [line for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert wanted <= _names(lines), f"binder/requirements.txt lacks {sorted(wanted - _names(lines))}"


def test_binder_uses_python_311_and_installs_the_checkout() -> None:
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    post_build = (ROOT / "binder" / "postBuild")
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    text = post_build.read_text()
    assert 'pip install' in text and '-e ".[lab]"' in text and "nrt-lab machine show" in text


def test_readme_links_binder_to_jupyterlab_on_the_first_tutorial() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "mybinder.org/v2/gh/" in readme and "urlpath=lab/tree/notebooks/01-getting-started.ipynb" in readme
    assert (ROOT / "notebooks" / "01-getting-started.ipynb").exists()
