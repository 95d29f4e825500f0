"""``nrt-lab neff inspect FILE`` (docs/behaviour.md §8): the ``NEFF Header:`` summary, the ``NEFF Nodes:`` listing, and
exit status 1 with the NRT status name for malformed, too new or missing files."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_cli
from nrt_lab.models import build_add, build_mlp
from nrt_lab.neff import HEADER_SIZE, GraphBuilder, write_neff
from nrt_lab.tools.cli import main

ADD_NODES = """\
NEFF Nodes:
    NODE       Executor    Name    Variable    Size    Type    Format    Shape    DataType    TimeSeries
       1    Neuron Core    sg00
                                    a_input      24      IN        NC    [4 3]     float16
                                    b_input      24      IN        NC    [4 3]     float16
                                   output_0      24     OUT        NC    [4 3]     float16    false
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``nrt-lab ARGS`` in-process; returns (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def header_fields(text: str) -> dict[str, str]:
    """``label: value`` pairs of the NEFF Header block."""
    block = text.split("\n\n", 1)[0].splitlines()
    assert block[0] == "NEFF Header:"
    fields = {}
    for line in block[1:]:
        assert line.startswith("      "), line
        label, _, value = line.strip().partition(":")
        fields[label] = value.strip()
    return fields


@pytest.fixture
def add_neff(tmp_path: Path) -> Path:
    path = tmp_path / "add.neff"
    write_neff(path, build_add().neff)
    return path


def test_inspect_add(add_neff: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "neff", "inspect", str(add_neff))
    assert (rc, err) == (0, "")
    header, nodes = out.split("\n\n")
    assert nodes == ADD_NODES
    data = add_neff.read_bytes()
    fields = header_fields(out)
    assert fields == {
        "Package Version": "3",
        "Header Size": f"{HEADER_SIZE}      (bytes)",
        "Data Size": f"{len(data) - HEADER_SIZE:<10}(bytes)",
        "Major Version": "2",
        "Minor Version": "0",
        "Build Version": "nrt_lab-0.1.0",
        "Number of Neuron cores": "1",
        "Requested Neuron cores": "1",
        "Logical NeuronCore size": "1",
        "Subgraphs": "sg00",
        "Hash": hashlib.sha256(data[HEADER_SIZE:]).hexdigest(),
        "UUID": fields["UUID"],
        "Network Name": "add",
        "Enabled Features": "N/A",
    }
    assert uuid.UUID(hex=fields["UUID"]).version == 5
    # the value column starts at the same place on every header line
    columns = {
        line.index(value) for line, value in zip(header.splitlines()[1:], fields.values(), strict=True)
    }
    assert columns == {37}


def test_inspect_through_the_console_script(
    add_neff: Path, machine_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(["neff", "inspect", str(add_neff)], machine_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == cli(capsys, "neff", "inspect", str(add_neff))[1]
    assert result.stdout.endswith(ADD_NODES)


def test_inspect_mlp_constants_are_not_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mlp.neff"
    write_neff(path, build_mlp().neff)
    rc, out, _ = cli(capsys, "neff", "inspect", str(path))
    assert rc == 0
    rows = out.split("NEFF Nodes:\n", 1)[1].splitlines()
    assert [r.split()[0] for r in rows[2:]] == ["x", "probs"]
    assert rows[2].split() == ["x", "100352", "IN", "NC", "[32", "784]", "float32"]
    assert rows[3].split() == ["probs", "1280", "OUT", "NC", "[32", "10]", "float32", "false"]


def test_inspect_lists_cpu_nodes_and_lnc2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = GraphBuilder(name="mixed")
    x = g.input("x", "float32", (2, 3, 4, 5))
    y = g.op("relu", [x], name="device_relu")
    z = g.op("relu", [y], executor="CPU", name="host_relu")
    g.output("out", z)
    path = tmp_path / "mixed.neff"
    write_neff(path, g.build(lnc=2, subgraphs=2, requested_cores=1))
    rc, out, _ = cli(capsys, "neff", "inspect", str(path))
    assert rc == 0
    fields = header_fields(out)
    assert (fields["Subgraphs"], fields["Logical NeuronCore size"], fields["Number of Neuron cores"]) == (
        "sg00 sg01",
        "2",
        "2",
    )
    rows = [line.split() for line in out.split("NEFF Nodes:\n", 1)[1].splitlines()]
    assert rows[0] == [
        "NODE",
        "Executor",
        "Name",
        "Variable",
        "Size",
        "Type",
        "Format",
        "Shape",
        "DataType",
        "TimeSeries",
    ]
    assert rows[1] == ["1", "Neuron", "Core", "sg00"]
    assert rows[2] == ["x", "480", "IN", "NHWC", "[2", "3", "4", "5]", "float32"]
    assert rows[3] == ["out", "480", "OUT", "NHWC", "[2", "3", "4", "5]", "float32", "false"]
    assert rows[4] == ["1", "Neuron", "Core", "sg01"]
    cpu = [i for i, r in enumerate(rows) if r[:2] == ["2", "CPU"]]
    assert len(cpu) == 1 and rows[cpu[0]] == ["2", "CPU", "host_relu"]
    assert rows[cpu[0] + 1] == ["device_relu:0", "480", "IN", "[2", "3", "4", "5]", "float32"]
    assert rows[cpu[0] + 2] == ["out", "480", "OUT", "[2", "3", "4", "5]", "float32"]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.neff"
    rc, out, err = cli(capsys, "neff", "inspect", str(missing))
    assert (rc, out) == (1, "")
    assert err == f"nrt-lab: error: {missing}: no such file\n"


def test_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "neff", "inspect", str(tmp_path))
    assert (rc, out) == (1, "")
    assert err == f"nrt-lab: error: {tmp_path}: not a readable file\n"


@pytest.mark.timeout(20)
def test_fifo_and_devices_are_refused_without_hanging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe.neff"
    os.mkfifo(fifo)
    link = tmp_path / "zero.neff"
    link.symlink_to("/dev/zero")
    for path in (fifo, link, Path("/dev/zero")):
        rc, out, err = cli(capsys, "neff", "inspect", str(path))
        assert (rc, out) == (1, "")
        assert err.startswith(f"nrt-lab: error: {path}: ")


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda data: data[:500], "NRT_INVALID(2): NEFF is too short: 500 bytes"),
        (lambda data: data[:-512], "NRT_INVALID(2): NEFF data_size is"),
        (lambda data: b"\x00" * len(data), "NRT_INVALID(2):"),
        (lambda data: data[:HEADER_SIZE] + b"garbage!" * ((len(data) - HEADER_SIZE) // 8), "NRT_INVALID(2):"),
    ],
    ids=["short", "truncated", "zeros", "garbage-payload"],
)
def test_malformed_file(
    mangle: Callable[[bytes], bytes],
    expected: str,
    add_neff: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.neff"
    bad.write_bytes(mangle(add_neff.read_bytes()))
    rc, out, err = cli(capsys, "neff", "inspect", str(bad))
    assert (rc, out) == (1, "")
    assert err.startswith(f"nrt-lab: error: {bad} is not a valid NEFF: "), err
    assert expected in err
    assert err.count("\n") == 1


def test_too_new_neff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = GraphBuilder(name="future")
    g.output("y", g.op("relu", [g.input("x", "float32", (4,))]))
    path = tmp_path / "future.neff"
    write_neff(path, g.build(neff_version=(3, 0)))
    rc, out, err = cli(capsys, "neff", "inspect", str(path))
    assert (rc, out) == (1, "")
    assert err == (
        f"nrt-lab: error: {path} is not a valid NEFF: NRT_UNSUPPORTED_NEFF_VERSION(10): "
        "NEFF version mismatch supported: 2.0 received: 3.0\n"
    )


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["neff"], ["neff", "inspect"], ["neff", "show", "x"], ["neff", "inspect", "a", "b"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
    assert "usage: nrt-lab neff" in capsys.readouterr().err
