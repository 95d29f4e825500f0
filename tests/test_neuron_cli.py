"""neuron-cli against a real neuron-rtd: the documented neuron-cli commands and their tables (docs/behaviour.md §10) (golden files in
tests/golden/neuron_cli/, reviewed by eye; NRT_LAB_UPDATE_GOLDEN=1 rewrites them), the maintenance notice on every
run, and the error naming the address when no daemon answers (docs/legacy_daemon.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from legacy_helpers import add_neff, child_env, serving_root

from nrt_lab.legacy.neuron_cli import MAINTENANCE_NOTICE, format_table, main

GOLDEN = Path(__file__).parent / "golden" / "neuron_cli"


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A fresh daemon (ids start at NCG 1 and model 10001) on an inf1.6xlarge."""
    yield from serving_root()


def cli(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args), env=child_env(root))
    out, err = capsys.readouterr()
    assert err.startswith(f"neuron-cli: {MAINTENANCE_NOTICE}\n")  # every run, first
    return code, out, err[len(f"neuron-cli: {MAINTENANCE_NOTICE}\n"):]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NRT_LAB_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_notice_names_the_2x_replacements() -> None:
    assert "maintenance mode since Neuron 1.16.0" in MAINTENANCE_NOTICE
    assert "list-model -> neuron-ls, neuron-top or neuron-monitor" in MAINTENANCE_NOTICE
    assert "libnrt frees every resource when a process exits" in MAINTENANCE_NOTICE


def test_commands_and_tables(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    neff = tmp_path / "add.neff"
    neff.write_bytes(add_neff())
    assert cli(root, capsys, "create-ncg", "--nc-count", "2")[:2] == (0, "Created NCG 1 with 2 NC(s)\n")
    assert cli(root, capsys, "load", str(neff), "--ncg-id", "1")[:2] == (0, "Loaded model 10001 (add.neff) into NCG 1\n")
    assert cli(root, capsys, "load", str(neff), "--ncg-id", "1", "--enable-direct-file-load")[:2] == \
        (0, "Loaded model 10002 (add.neff) into NCG 1\n")
    assert cli(root, capsys, "load", str(neff))[:2] == (0, "Loaded model 10003 (add.neff)\n")
    assert cli(root, capsys, "load", str(neff), "--ncg-id", "0", "--nc-count", "3")[:2] == \
        (0, "Created NCG 3 with 3 NC(s)\nLoaded model 10004 (add.neff) into NCG 3\n")
    code, out, _ = cli(root, capsys, "list-model")
    assert code == 0
    check_golden("list-model.txt", out)
    code, out, _ = cli(root, capsys, "list-ncg")
    assert code == 0
    check_golden("list-ncg.txt", out)
    assert cli(root, capsys, "stop", "10004")[:2] == (0, "Stopped model 10004\n")
    assert cli(root, capsys, "start", "10001")[:2] == (0, "Started model 10001\n")
    code, _, err = cli(root, capsys, "destroy-ncg", "--ncg-id", "1")
    assert code == 1
    assert err == ("neuron-cli: error: destroy_eg failed with NERR_FAILED_STATE (8): [NMGR:kmgr_destroy_eg] EG(1) "
                   "still holds 2 NN(s); unload them first\n")
    code, _, err = cli(root, capsys, "unload", "4242")
    assert (code, err) == (1, "neuron-cli: error: unload failed with NERR_INVALID_HANDLE (3): "
                              "[NMGR:kmgr_unload_nn] Failed to find model: 4242\n")
    assert cli(root, capsys, "unload", "10003")[:2] == (0, "Unloaded model 10003\n")
    assert cli(root, capsys, "reset")[0] == 0
    code, out, _ = cli(root, capsys, "list-ncg")
    assert out == "Device count 4 NC count 16\nFound 0 NCG's\n" + format_table(
        ("NCG ID", "NC COUNT", "DEVICE START INDEX", "NC START INDEX"), [])


def test_load_errors_are_one_line(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(root, capsys, "load", str(tmp_path / "missing.neff"))
    assert code == 1 and err.startswith("neuron-cli: error: cannot read NEFF") and err.count("\n") == 1
    new = tmp_path / "new.neff"
    new.write_bytes(add_neff(version=(2, 0)))
    code, _, err = cli(root, capsys, "load", str(new))
    assert err == ("neuron-cli: error: load failed with NERR_UNSUPPORTED_VERSION (10): [NMGR:kmgr_load_nn] NEFF "
                   "version mismatch supported: 1.1 received: 2.0\n")
    code, _, err = cli(root, capsys, "load", str(new), "--ncg-id", "-5")
    assert code == 1 and "--ncg-id -5 is invalid; accepted: -1" in err


def test_no_daemon_names_the_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(tmp_path, capsys, "-a", "unix:/run/neuron7.sock", "list-model")
    assert (code, out) == (1, "")
    check_golden("no-daemon.txt", err)
