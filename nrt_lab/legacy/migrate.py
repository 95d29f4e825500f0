"""``nrt-lab migrate-check PATH...``: find the Runtime 1.x patterns in shell scripts, CI files, Dockerfiles, systemd
units, Kubernetes manifests and Python sources, each with file:line and the migration step that removes it
(docs/legacy.md; the steps follow the "Introducing Neuron Runtime 2.x" migration guide).

Output as text, JSON or SARIF 2.1.0 (so CI can annotate the lines). Exit status: 0 nothing found, 1 something
found, 2 bad usage or an input that could not be read. Files are read with a size bound; binary files, FIFOs and
devices are skipped and listed, never read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_FILE_BYTES",
    "RULES",
    "CheckResult",
    "Finding",
    "Rule",
    "add_parser",
    "check_paths",
    "check_text",
    "file_kind",
    "render_json",
    "render_sarif",
    "render_text",
    "rule_ids",
    "run",
]

MAX_FILE_BYTES = 4 * 1024 * 1024
_SNIFF_BYTES = 8192
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache"}
_DOCS = "docs/legacy.md"


@dataclass(frozen=True)
class Rule:
    """One 1.x pattern: what it is and the migration step that fixes it."""

    id: str
    title: str
    remedy: str
    pattern: re.Pattern[str]
    kinds: frozenset[str] | None = None  # file kinds it applies to (None: every kind)
    shadowed_by: tuple[str, ...] = ()  # rules that, when they match the same line, make this one redundant


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


_RUN_RTD = r"(?:^|[\s\"'\[=/;&|(,])neuron-rtd(?![\w.@-])"
RULES: tuple[Rule, ...] = (
    Rule("NRT1001", "starts, stops or restarts the neuron-rtd service",
         "Runtime 2.x is a library (libnrt.so) inside the framework: nothing to start or stop. Delete this line; "
         "on a machine that still runs the daemon, stop it once (sudo systemctl stop neuron-rtd) and remove "
         "aws-neuron-runtime",
         _rx(r"\b(?:systemctl|service)\b[^\n#]*\bneuron-rtd\b|\bneuron-rtd(?:@\S*)?\s+(?:start|stop|restart)\b")),
    Rule("NRT1002", "runs the neuron-rtd daemon inside a container",
         "remove the daemon from the image and the pod: the application loads libnrt itself. Pass the Neuron "
         "devices to the container instead (docker run --device=/dev/neuron0; the Neuron device plugin on "
         "Kubernetes) and drop the sidecar container",
         _rx(_RUN_RTD), kinds=frozenset({"dockerfile", "kubernetes", "compose"}), shadowed_by=("NRT1001",)),
    Rule("NRT1003", "runs or kills the neuron-rtd daemon",
         "delete it: Runtime 2.x needs no daemon; the NeuronCores are claimed when the application calls init and "
         "freed when it exits",
         _rx(_RUN_RTD), kinds=frozenset({"shell", "systemd", "ci", "python", "text"}), shadowed_by=("NRT1001",)),
    Rule("NRT1004", "runs several neuron-rtd daemons (template units or per-daemon sockets)",
         "one application process per group of NeuronCores instead: give each process its cores with "
         "NEURON_RT_VISIBLE_CORES (or NEURON_RT_NUM_CORES)",
         _rx(r"\bneuron-rtd@|\bneuron\.sock\d+\b|\bneuron-rtd\b[^\n#]*\s-i\s")),
    Rule("NRT1005", "uses a neuron-rtd configuration file",
         "delete the file and its references: Runtime 2.x has no daemon configuration; per-process settings are "
         "the NEURON_RT_* environment variables",
         _rx(r"\bneuron-rtd\.config\b|\bnrtd[^\s/\"'=]*\.json\b")),
    Rule("NRT1006", "sets or reads a neuron-rtd client variable (NEURON_RTD_*)",
         "remove it: with Runtime 2.x the framework calls the runtime in process, there is no daemon address "
         "or socket",
         _rx(r"\bNEURON_RTD_[A-Z_]+\b")),
    Rule("NRT1007", "mounts or points at the neuron-rtd socket",
         "remove the socket volume and mount: pass the devices (/dev/neuron*) to the container instead",
         _rx(r"/run/neuron(?:\d+)?\.sock\d*\b|\bunix:[^\s\"']*neuron[^\s\"']*\.sock"),
         shadowed_by=("NRT1002", "NRT1003", "NRT1006")),
    Rule("NRT1008", "calls neuron-cli (Runtime 1.x only, maintenance since Neuron 1.16.0)",
         "list-model → neuron-ls, neuron-top or neuron-monitor; create-ncg, destroy-ncg, list-ncg and reset → "
         "delete: libnrt frees every resource when the process exits",
         _rx(r"(?<![\w-])neuron-cli(?![\w-])")),
    Rule("NRT1009", "sets NEURONCORE_GROUP_SIZES (NeuronCore groups, deprecated)",
         "use NEURON_RT_NUM_CORES or NEURON_RT_VISIBLE_CORES per process, one process per former group",
         _rx(r"\bNEURONCORE_GROUP_SIZES\b")),
    Rule("NRT1010", "installs or names a Neuron 1.x package",
         "aws-neuron-runtime and aws-neuron-runtime-base: remove (Runtime 2.x ships with the framework); "
         "aws-neuron-dkms → aws-neuronx-dkms; aws-neuron-tools → aws-neuronx-tools",
         _rx(r"\baws-neuron-(?:runtime(?:-base)?|dkms|tools)\b")),
    Rule("NRT1011", "uses the Runtime 1.x gRPC client",
         "call the runtime in process instead: nrt_lab.init(), load and execute (the Runtime 2.x API)",
         _rx(r"\bnmgr(?:_service|_session_service|_stream_service)?_pb2(?:_grpc)?\b|\bnmgr_v1Stub\b|"
             r"\bnrt_lab\.legacy\b[^\n#]*\bClient\b|\blegacy\.Client\b"),
         kinds=frozenset({"python"})),
    Rule("NRT1012", "sets a Runtime 1.x framework client variable",
         "NEURON_FRAMEWORK_INFER_TIMEOUT_SEC → NEURON_RT_EXEC_TIMEOUT; NEURON_MAX_NUM_INFERS → remove (Runtime 2.x "
         "has no daemon queue)",
         _rx(r"\bNEURON_FRAMEWORK_INFER_TIMEOUT_SEC\b|\bNEURON_MAX_NUM_INFERS\b")),
    Rule("NRT1013", "makes a unit depend on the neuron-rtd service",
         "remove neuron-rtd from After=/Requires=/Wants=: a Runtime 2.x application needs only the driver "
         "(ConditionPathExistsGlob=/dev/neuron*)",
         _rx(r"^\s*(?:After|Before|Requires|Wants|BindsTo|PartOf|Requisite)\s*=[^\n]*\bneuron-rtd\b"),
         kinds=frozenset({"systemd"})),
)
_CONFIG_NAME = re.compile(r"^(?:neuron-rtd\.config|nrtd[^/]*\.json)$")
_RULE_INDEX = {rule.id: i for i, rule in enumerate(RULES)}


@dataclass(frozen=True)
class Finding:
    """One 1.x pattern at file:line:column."""

    path: str
    line: int
    column: int
    rule: Rule
    text: str

    def to_json(self) -> dict[str, Any]:
        """The ``--format json`` form."""
        return {"file": self.path, "line": self.line, "column": self.column, "rule": self.rule.id,
                "message": self.rule.title, "remedy": self.rule.remedy, "text": self.text}


@dataclass
class CheckResult:
    """Findings, the files read, those skipped (with why) and those that could not be read."""

    findings: list[Finding]
    checked: list[str]
    skipped: list[tuple[str, str]]
    errors: list[tuple[str, str]]


def file_kind(path: str, head: str) -> str:
    """The kind of a file from its name and first line: dockerfile, compose, kubernetes, ci, systemd, shell,
    python or text (the kind decides which comment syntax and rules apply)."""
    name = os.path.basename(path).lower()
    suffix = os.path.splitext(name)[1]
    first = head.split("\n", 1)[0]
    if name.startswith(("dockerfile", "containerfile")) or suffix in (".dockerfile", ".containerfile"):
        return "dockerfile"
    if suffix in (".service", ".socket", ".timer", ".target", ".mount"):
        return "systemd"
    if suffix == ".py" or (first.startswith("#!") and "python" in first):
        return "python"
    if suffix in (".sh", ".bash", ".zsh") or (first.startswith("#!") and re.search(r"\b(?:ba|z|da)?sh\b", first)):
        return "shell"
    if suffix in (".yml", ".yaml"):
        if name.startswith(("docker-compose", "compose")):
            return "compose"
        parts = path.replace("\\", "/").split("/")
        if ".github" in parts or name in (".gitlab-ci.yml", "buildspec.yml", "azure-pipelines.yml", ".travis.yml"):
            return "ci"
        if re.search(r"^\s*apiVersion\s*:", head, re.MULTILINE) and re.search(r"^\s*kind\s*:", head, re.MULTILINE):
            return "kubernetes"
        return "ci"
    if name in ("jenkinsfile", "makefile", ".gitlab-ci.yml") or suffix in (".groovy",):
        return "ci"
    return "text"


def _code_part(line: str, kind: str) -> str:
    """The line without its comment (shell, Python, YAML, Dockerfile and systemd comments start with # or ;)."""
    stripped = line.lstrip()
    if stripped.startswith("#") or (kind == "systemd" and stripped.startswith(";")):
        return ""
    if kind in ("shell", "python", "ci", "kubernetes", "compose", "dockerfile"):
        # A " #" outside quotes starts a comment; quotes are tracked only roughly (enough for these patterns).
        quote = ""
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1].isspace()):
                return line[:i]
    return line


def check_text(path: str, text: str, kind: str | None = None) -> list[Finding]:
    """Every finding in ``text`` (the contents of ``path``)."""
    kind = kind or file_kind(path, text[:4096])
    findings: list[Finding] = []
    if _CONFIG_NAME.match(os.path.basename(path)):
        config_rule = RULES[_RULE_INDEX["NRT1005"]]
        findings.append(Finding(path, 1, 1, config_rule, f"{os.path.basename(path)} (the file itself)"))
    for number, line in enumerate(text.splitlines(), start=1):
        code = _code_part(line, kind)
        if not code.strip():
            continue
        matched: dict[str, int] = {}
        for rule in RULES:
            if rule.kinds is not None and kind not in rule.kinds:
                continue
            match = rule.pattern.search(code)
            if match is None:
                continue
            matched[rule.id] = match.start() + (1 if match.group(0)[:1] in " \t\"'[=/;&|(," else 0) + 1
        for rule in RULES:
            if rule.id in matched and not any(s in matched for s in rule.shadowed_by):
                findings.append(Finding(path, number, matched[rule.id], rule, line.strip()[:200]))
    return findings


def _walk(paths: Sequence[str], result: CheckResult) -> Iterator[str]:
    for given in paths:
        try:
            st = os.stat(given)
        except OSError as exc:
            result.errors.append((given, exc.strerror or str(exc)))
            continue
        if stat.S_ISDIR(st.st_mode):
            for dirpath, dirnames, filenames in os.walk(given, onerror=lambda e: result.errors.append(
                    (str(e.filename), e.strerror or str(e)))):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                for name in sorted(filenames):
                    yield os.path.join(dirpath, name)
        else:
            yield given


def _read_bounded(path: str) -> tuple[str | None, str]:
    """(text, "") or (None, why it was skipped); OSError when it cannot be read."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size > MAX_FILE_BYTES:
        return None, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None, "not a regular file"
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        return None, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
    if b"\0" in data[:_SNIFF_BYTES]:
        return None, "binary file"
    return data.decode("utf-8", "replace"), ""


def check_paths(paths: Sequence[str]) -> CheckResult:
    """Check files and directories (recursively; VCS and virtualenv folders skipped)."""
    result = CheckResult([], [], [], [])
    for path in _walk(paths, result):
        try:
            text, why = _read_bounded(path)
        except OSError as exc:
            result.errors.append((path, exc.strerror or str(exc)))
            continue
        if text is None:
            result.skipped.append((path, why))
            continue
        result.checked.append(path)
        result.findings.extend(check_text(path, text))
    return result


def render_text(result: CheckResult) -> str:
    """``path:line:col: RULE message`` with the remedy under it, then a summary line."""
    lines: list[str] = []
    for f in result.findings:
        lines.append(f"{f.path}:{f.line}:{f.column}: {f.rule.id} {f.rule.title}")
        lines.append(f"    {f.text}")
        lines.append(f"    fix: {f.rule.remedy}")
    for path, why in result.skipped:
        lines.append(f"{path}: skipped ({why})")
    files = len({f.path for f in result.findings})
    if result.findings:
        lines.append(f"{len(result.findings)} Runtime 1.x pattern{'s' if len(result.findings) != 1 else ''} in "
                     f"{files} file{'s' if files != 1 else ''} ({len(result.checked)} checked); see {_DOCS}")
    else:
        lines.append(f"no Runtime 1.x pattern found ({len(result.checked)} file"
                     f"{'s' if len(result.checked) != 1 else ''} checked)")
    return "\n".join(lines) + "\n"


def render_json(result: CheckResult) -> str:
    """The findings, files checked and skipped as one JSON document."""
    return json.dumps({
        "findings": [f.to_json() for f in result.findings],
        "checked": result.checked,
        "skipped": [{"file": p, "reason": why} for p, why in result.skipped],
        "errors": [{"file": p, "error": why} for p, why in result.errors],
    }, indent=2) + "\n"


def _uri(path: str) -> str:
    return Path(path).as_posix() if not os.path.isabs(path) else Path(path).as_uri()


def render_sarif(result: CheckResult) -> str:
    """SARIF 2.1.0: one run, one rule per 1.x pattern, one result per finding (GitHub code scanning reads it)."""
    rules = [{
        "id": r.id, "name": re.sub(r"\W+", "_", r.title).strip("_"),
        "shortDescription": {"text": f"Runtime 1.x: {r.title}"},
        "fullDescription": {"text": f"Runtime 1.x: {r.title}. Migration: {r.remedy}"},
        "help": {"text": r.remedy},
        "defaultConfiguration": {"level": "warning"},
    } for r in RULES]
    results = [{
        "ruleId": f.rule.id, "ruleIndex": _RULE_INDEX[f.rule.id], "level": "warning",
        "message": {"text": f"{f.rule.title}. Fix: {f.rule.remedy}"},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": _uri(f.path)},
            "region": {"startLine": f.line, "startColumn": f.column, "snippet": {"text": f.text}},
        }}],
    } for f in result.findings]
    notifications = [{"level": "error", "message": {"text": f"{p}: {why}"}} for p, why in result.errors]
    run_obj: dict[str, Any] = {
        "tool": {"driver": {"name": "nrt-lab migrate-check", "informationUri": "https://github.com/nrt-lab/nrt_lab",
                            "rules": rules}},
        "results": results,
        "invocations": [{"executionSuccessful": not result.errors,
                         "toolExecutionNotifications": notifications}],
    }
    return json.dumps({"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
                       "runs": [run_obj]}, indent=2) + "\n"


def add_parser(sub: Any) -> None:
    """Register ``migrate-check PATH... [--format text|json|sarif]`` on the ``nrt-lab`` sub-parsers object."""
    cmd = sub.add_parser("migrate-check", help="find Runtime 1.x patterns (neuron-rtd, neuron-cli, NCGs, 1.x "
                                               "packages) in scripts, CI files, Dockerfiles, units, manifests")
    cmd.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (searched recursively)")
    cmd.add_argument("--format", choices=("text", "json", "sarif"), default="text", help="output format")
    cmd.add_argument("-o", "--output", metavar="FILE", default=None, help="write the report to FILE (default: stdout)")


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(text)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``nrt-lab migrate-check``: 0 clean, 1 findings, 2 usage error or unreadable input."""
    result = check_paths(list(args.paths))
    render = {"text": render_text, "json": render_json, "sarif": render_sarif}[args.format]
    try:
        _emit(render(result), args.output)
    except OSError as exc:
        sys.stderr.write(f"nrt-lab migrate-check: error: cannot write {args.output}: {exc.strerror or exc}\n")
        return 2
    for path, why in result.errors:
        sys.stderr.write(f"nrt-lab migrate-check: error: {path}: {why}\n")
    if result.errors:
        return 2
    return 1 if result.findings else 0


def rule_ids(findings: Iterable[Finding]) -> list[str]:
    """The rule ids of ``findings`` in order (for tests and summaries)."""
    return [f.rule.id for f in findings]
