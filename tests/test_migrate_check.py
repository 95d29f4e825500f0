"""``nrt-lab migrate-check``: the Runtime 1.x patterns of a corpus of scripts, CI files, Dockerfiles, units,
manifests and Python sources, with their expected findings, and no finding on 2.x-clean files (docs/legacy.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nrt_lab.legacy import migrate
from nrt_lab.tools import cli

CORPUS = Path(__file__).parent / "data" / "migrate"
LEGACY = CORPUS / "legacy"
CLEAN = CORPUS / "clean"


def _expected() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
    return data


def test_corpus_is_large_enough_and_fully_described() -> None:
    legacy = sorted(str(p.relative_to(LEGACY)) for p in LEGACY.rglob("*") if p.is_file())
    clean = [p for p in CLEAN.rglob("*") if p.is_file()]
    assert len(legacy) + len(clean) >= 20
    assert legacy == sorted(_expected()), "every legacy sample has expected findings, and only those"


@pytest.mark.parametrize("name", sorted(_expected()))
def test_each_legacy_sample_gives_exactly_its_expected_findings(name: str) -> None:
    path = LEGACY / name
    found = [f"{f.line}:{f.rule.id}" for f in migrate.check_text(name, path.read_text(encoding="utf-8"))]
    assert sorted(found) == sorted(_expected()[name])


def test_clean_files_have_no_finding_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate-check", str(CLEAN)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no Runtime 1.x pattern found (7 files checked)")


def test_text_output_names_file_line_rule_and_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate-check", str(LEGACY / "cli-ops.sh")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{LEGACY / 'cli-ops.sh'}:2:1: NRT1008 calls neuron-cli (Runtime 1.x only, maintenance since " \
                     "Neuron 1.16.0)"
    assert out[1] == "    neuron-cli list-model"
    assert out[2].startswith("    fix: list-model → neuron-ls, neuron-top or neuron-monitor")
    assert out[-1].startswith("3 Runtime 1.x patterns in 1 file (1 checked)")


def test_json_output_over_the_whole_corpus(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(LEGACY)
    assert cli.main(["migrate-check", "--format", "json", "."]) == 1
    report = json.loads(capsys.readouterr().out)
    total = sum(len(v) for v in _expected().values())
    assert len(report["findings"]) == total
    first = report["findings"][0]
    assert set(first) == {"file", "line", "column", "rule", "message", "remedy", "text"}
    assert report["errors"] == [] and report["skipped"] == []


def test_sarif_output_is_sarif_2_1_0(tmp_path: Path) -> None:
    out = tmp_path / "report.sarif"
    assert cli.main(["migrate-check", "--format", "sarif", "-o", str(out), str(LEGACY / "Dockerfile")]) == 1
    sarif = json.loads(out.read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.id for r in migrate.RULES]
    results = run["results"]
    assert [(r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in results] == [
        ("NRT1010", 2), ("NRT1005", 4), ("NRT1002", 5)]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] == "warning" and result["message"]["text"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("Dockerfile")
    assert run["invocations"][0]["executionSuccessful"] is True


def test_comments_do_not_count_but_code_after_them_does() -> None:
    text = "# sudo systemctl start neuron-rtd\necho ok  # neuron-cli list-model\nneuron-cli list-ncg  # old\n"
    assert [(f.line, f.rule.id) for f in migrate.check_text("x.sh", text)] == [(3, "NRT1008")]


def test_lookalikes_of_2x_names_are_not_findings() -> None:
    text = ("apt-get install aws-neuronx-dkms aws-neuronx-tools aws-neuronx-runtime-lib\n"
            "export NEURON_RT_VISIBLE_CORES=0-1 NEURON_RT_NUM_CORES=2\n"
            "neuron-top; neuron-ls; neuron-monitor -c monitor.json\n")
    assert migrate.check_text("install.sh", text) == []


def test_binary_fifo_and_oversized_files_are_skipped_not_read(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\0\x01neuron-rtd\0")
    os.mkfifo(tmp_path / "pipe")
    big = tmp_path / "big.sh"
    with open(big, "wb") as handle:
        handle.truncate(migrate.MAX_FILE_BYTES + 1)
    (tmp_path / "ok.sh").write_text("neuron-ls\n", encoding="utf-8")
    assert cli.main(["migrate-check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'blob.bin'}: skipped (binary file)" in out
    assert f"{tmp_path / 'pipe'}: skipped (not a regular file)" in out
    assert f"{tmp_path / 'big.sh'}: skipped (larger than 4 MiB)" in out
    assert "(1 file checked)" in out


def test_missing_or_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate-check", str(tmp_path / "nope.sh"), str(LEGACY / "ncg.sh")]) == 2
    captured = capsys.readouterr()
    assert f"nrt-lab migrate-check: error: {tmp_path / 'nope.sh'}: No such file or directory" in captured.err
    assert "NRT1009" in captured.out  # the readable file is still reported
    if os.geteuid() != 0:
        locked = tmp_path / "locked.sh"
        locked.write_text("neuron-cli reset\n", encoding="utf-8")
        locked.chmod(0)
        assert cli.main(["migrate-check", str(locked)]) == 2


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["migrate-check"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["migrate-check", "--format", "xml", "x"])
    assert exc.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_file_kinds() -> None:
    assert migrate.file_kind("a/Dockerfile.gpu", "") == "dockerfile"
    assert migrate.file_kind(".github/workflows/ci.yml", "on: push\n") == "ci"
    assert migrate.file_kind("deploy.yaml", "apiVersion: v1\nkind: Pod\n") == "kubernetes"
    assert migrate.file_kind("run", "#!/usr/bin/env bash\n") == "shell"
    assert migrate.file_kind("tool", "#!/usr/bin/python3\n") == "python"
    assert migrate.file_kind("x.service", "") == "systemd"
