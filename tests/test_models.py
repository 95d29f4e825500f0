"""Demo models (``nrt_lab.models``): they load and really compute what their NumPy references say, their
builds are byte-identical, and ``nrt-lab models build`` writes them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import nrt_lab
from conftest import run_cli
from nrt_lab import models
from nrt_lab.neff import parse_neff
from nrt_lab.tools.cli import main

pytestmark = pytest.mark.instance("trn1.2xlarge")

NAMES = ["add", "mlp", "cnn", "transformer"]
EXPECTED_IO = {
    "add": ({"a_input": ("float16", (4, 3)), "b_input": ("float16", (4, 3))}, {"output_0": ("float16", (4, 3))}),
    "mlp": ({"x": ("float32", (32, 784))}, {"probs": ("float32", (32, 10))}),
    "cnn": ({"image": ("float32", (8, 1, 28, 28))}, {"logits": ("float32", (8, 10))}),
    "transformer": ({"x": ("float32", (2, 16, 64))}, {"y": ("float32", (2, 16, 64))}),
}


@pytest.fixture(scope="module")
def built() -> dict[str, models.DemoModel]:
    """Each demo model built once for the module."""
    return {name: builder() for name, builder in models.DEMO_MODELS.items()}


@pytest.fixture
def runtime(machine_root: Path) -> Iterator[nrt_lab.Runtime]:
    """A live runtime on a fresh trn1.2xlarge, closed at teardown."""
    rt = nrt_lab.init()
    try:
        yield rt
    finally:
        nrt_lab.close()


def test_registry_lists_the_four_models() -> None:
    assert list(models.DEMO_MODELS) == NAMES
    for name, builder in models.DEMO_MODELS.items():
        assert builder.__doc__ and len(builder.__doc__.strip()) > 20, f"{name} builder has no docstring"


@pytest.mark.parametrize("name", NAMES)
def test_model_computes_its_reference(name: str, built: dict[str, models.DemoModel],
                                      runtime: nrt_lab.Runtime) -> None:
    demo = built[name]
    model = nrt_lab.Model.load(demo.neff)
    want_in, want_out = EXPECTED_IO[name]
    assert {n: (i.dtype, i.shape) for n, i in model.inputs.items()} == want_in
    assert {n: (o.dtype, o.shape) for n, o in model.outputs.items()} == want_out
    assert model.flops_per_execution > 0
    for seed in (1, 2):
        inputs = models.example_inputs(name, seed)
        assert {n: (a.dtype.name, a.shape) for n, a in inputs.items()} == want_in
        outputs = model.execute(inputs)
        expected = demo.reference(inputs)
        assert expected.keys() == outputs.keys() == want_out.keys()
        for out_name, want in expected.items():
            got = outputs[out_name].numpy()
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, **models.tolerance(want.dtype))
        # the module-level reference() is the same function
        for out_name, want in models.reference(name, inputs).items():
            np.testing.assert_array_equal(want, expected[out_name])
    # inputs differ → outputs differ (the model is not a constant)
    first = model.execute(models.example_inputs(name, 1))
    second = model.execute(models.example_inputs(name, 2))
    out_name = next(iter(want_out))
    assert not np.array_equal(first[out_name].numpy(), second[out_name].numpy())


def test_outputs_are_meaningful(built: dict[str, models.DemoModel], runtime: nrt_lab.Runtime) -> None:
    add = nrt_lab.Model.load(built["add"].neff)
    a = np.arange(12, dtype=np.float16).reshape(4, 3)
    out = add.execute({"a_input": a, "b_input": np.ones((4, 3), np.float16)})["output_0"].numpy()
    np.testing.assert_array_equal(out, a + 1)
    mlp = nrt_lab.Model.load(built["mlp"].neff)
    probs = mlp.execute(models.example_inputs("mlp"))["probs"].numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


def test_builds_are_byte_identical(built: dict[str, models.DemoModel]) -> None:
    uuids = set()
    for name, builder in models.DEMO_MODELS.items():
        again = builder()
        assert again.neff == built[name].neff, f"{name}: two builds differ"
        neff = parse_neff(again.neff, validate_hash=True)
        assert neff.name == name
        assert neff.neff_version == (2, 0)
        uuids.add(neff.uuid)
    assert len(uuids) == len(NAMES)


def test_reference_and_inputs_reject_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown demo model 'resnet'"):
        models.reference("resnet", {})
    with pytest.raises(ValueError, match="accepted: add, mlp, cnn, transformer"):
        models.example_inputs("resnet")


def test_example_inputs_are_deterministic() -> None:
    for name in NAMES:
        a, b = models.example_inputs(name, 7), models.example_inputs(name, 7)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_build_models_writes_four_files(tmp_path: Path, built: dict[str, models.DemoModel],
                                        runtime: nrt_lab.Runtime) -> None:
    paths = models.build_models(tmp_path / "new" / "dir")
    assert [p.name for p in paths] == [f"{n}.neff" for n in NAMES]
    for path, name in zip(paths, NAMES, strict=True):
        assert path.read_bytes() == built[name].neff
    model = nrt_lab.Model.load(paths[0])
    assert model.name == "add.neff"
    inputs = models.example_inputs("add")
    np.testing.assert_array_equal(model.execute(inputs)["output_0"].numpy(),
                                  models.reference("add", inputs)["output_0"])


def test_cli_models_build(tmp_path: Path, machine_root: Path, capsys: pytest.CaptureFixture[str],
                          built: dict[str, models.DemoModel]) -> None:
    target = tmp_path / "neffs"
    result = run_cli(["models", "build", str(target)], machine_root)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    for line, name in zip(lines, NAMES, strict=True):
        match = re.fullmatch(r"(\S+)  (\d+) bytes  sha256 ([0-9a-f]{64})", line)
        assert match, line
        path = Path(match[1])
        assert path == target / f"{name}.neff"
        data = path.read_bytes()
        assert int(match[2]) == len(data) and match[3] == hashlib.sha256(data).hexdigest()
        assert data == built[name].neff
    # in-process, a second build prints the same lines
    capsys.readouterr()
    assert main(["models", "build", str(target)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_cli_models_build_refuses_a_file_as_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["models", "build", str(blocker)]) == 1
    assert "nrt-lab: error: cannot write the demo models to" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["models", "build"])
    assert info.value.code == 2
