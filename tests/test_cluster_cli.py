"""``nrt-lab cluster`` without Ray running: node specs, CLI errors, damaged cluster records, monitoring config.

Nothing here starts Ray (tests/test_cluster.py does, in a loopback-only namespace): these are the checks that
fail in milliseconds, before any process is started, and the files a cluster writes for Prometheus and Grafana,
checked against what ``neuron-monitor-prometheus`` really serves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_prometheus import report, runtime_entry

import nrt_lab.cluster as cluster
from nrt_lab.cluster import launcher
from nrt_lab.cluster.monitoring import cluster_dashboard, prometheus_config, write_monitoring_config
from nrt_lab.tools.cli import main as nrt_lab_main
from nrt_lab.tools.prometheus import NeuronMonitorCollector, make_registry

# ---------------------------------------------------------------------------------------------- node specs


def test_specs_default_names_follow_family_and_position() -> None:
    specs = cluster.parse_node_specs(["trn1.32xlarge", "inf2.48xlarge", "trn2.48xlarge:lnc1", "edge=inf2.xlarge"])
    assert [(s.name, s.instance, s.lnc) for s in specs] == [
        ("trn1-0", "trn1.32xlarge", 1), ("inf2-1", "inf2.48xlarge", 1), ("trn2-2", "trn2.48xlarge", 1),
        ("edge", "inf2.xlarge", 1)]
    assert cluster.parse_node_specs(["trn2.48xlarge"])[0].lnc == 2  # trn2's default LNC
    assert cluster.parse_node_specs([" TRN1.2xlarge "])[0].instance == "trn1.2xlarge"
    # text round-trips, names always explicit, the LNC only where it differs from the default
    assert [s.text for s in specs] == ["trn1-0=trn1.32xlarge", "inf2-1=inf2.48xlarge", "trn2-2=trn2.48xlarge:lnc1",
                                       "edge=inf2.xlarge"]
    assert cluster.parse_node_specs([s.text for s in specs]) == specs


@pytest.mark.parametrize(("spec", "words"), [
    ("", ["''", "[NAME=]INSTANCE[:lncN]"]),
    ("=", ["'='", "[NAME=]INSTANCE[:lncN]"]),
    ("trn9.huge", ["'trn9.huge'"]),
    ("trn2.48xlarge:lnc3", ["'lnc3'", "lnc1, lnc2"]),
    ("trn1.32xlarge:fast", ["'fast'", "lnc1, lnc2"]),
    ("Big=trn1.32xlarge", ["'Big'", "lower-case"]),
    ("a b=trn1.32xlarge", ["'a b'", "lower-case"]),
    ("x" * 30 + "=trn1.32xlarge", ["1-24"]),
    ("a=b=trn1.32xlarge", ["'a=b=trn1.32xlarge'"]),
])
def test_bad_spec_is_named_with_what_is_accepted(spec: str, words: list[str]) -> None:
    with pytest.raises(cluster.ClusterError) as caught:
        cluster.parse_node_specs([spec])
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_instance_error_lists_the_catalogue() -> None:
    with pytest.raises(cluster.ClusterError, match=r"'trn9\.huge'.*trn1\.32xlarge"):
        cluster.parse_node_specs(["trn9.huge"])


def test_node_count_and_duplicate_names_are_refused() -> None:
    with pytest.raises(cluster.ClusterError, match="at least one node"):
        cluster.parse_node_specs([])
    with pytest.raises(cluster.ClusterError, match=f"at most {cluster.MAX_NODES}"):
        cluster.parse_node_specs(["inf2.xlarge"] * (cluster.MAX_NODES + 1))
    assert len(cluster.parse_node_specs(["inf2.xlarge"] * cluster.MAX_NODES)) == cluster.MAX_NODES
    with pytest.raises(cluster.ClusterError, match="'a' is used twice"):
        cluster.parse_node_specs(["a=inf2.xlarge", "a=trn1.2xlarge"])
    with pytest.raises(cluster.ClusterError, match="'inf2-1' is used twice"):
        cluster.parse_node_specs(["inf2-1=trn1.2xlarge", "inf2.xlarge"])
    with pytest.raises(cluster.ClusterError, match="'head'"):
        cluster.parse_node_specs(["head=inf2.xlarge"])


def test_up_refuses_bad_input_before_starting_anything(tmp_path: Path) -> None:
    where = tmp_path / "c"
    for cpus in (0, 1025, True, "2", 2.0):
        with pytest.raises(cluster.ClusterError, match="accepted: 1 to 1024"):
            cluster.up(["inf2.xlarge"], where, cpus_per_node=cpus)  # type: ignore[arg-type]
    with pytest.raises(cluster.ClusterError, match="'nope'"):
        cluster.up(["nope"], where)
    assert not where.exists()


# ---------------------------------------------------------------------------------------------- the CLI


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = nrt_lab_main(["cluster", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "none"
    for action in (["status"], ["status", "--json"], ["status", "--ports"], ["down"], ["stop-node", "x"],
                   ["start-node", "x"]):
        code, out, err = run_cli(capsys, *action, "--dir", str(where))
        assert code == 1, action
        assert out == ""
        assert err.count("\n") == 1 and f"no cluster in {where}" in err, err
        assert "Traceback" not in err
    assert not where.exists()  # asking does not create the directory


def test_cli_default_directory_follows_the_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cluster.CLUSTER_DIR_VARIABLE, str(tmp_path / "from-env"))
    code, _out, err = run_cli(capsys, "status")
    assert code == 1 and str(tmp_path / "from-env") in err
    monkeypatch.setenv(cluster.CLUSTER_DIR_VARIABLE, "x" * 2000)
    code, _out, err = run_cli(capsys, "status")
    assert code == 1 and cluster.CLUSTER_DIR_VARIABLE in err and "Traceback" not in err
    monkeypatch.delenv(cluster.CLUSTER_DIR_VARIABLE)
    monkeypatch.setenv("NRT_LAB_ROOT", str(tmp_path / "state"))
    assert cluster.default_cluster_dir() == tmp_path / "state-cluster"


@pytest.mark.parametrize(("args", "words"), [
    (["up", "--cpus", "0"], ["--cpus", "1 to 1024"]),
    (["up", "--cpus", "lots"], ["'lots'", "1 to 1024"]),
    (["up", "--cpus", "9" * 40], ["--cpus", "1 to 1024"]),
    (["up", "--timeout", "-1"], ["--timeout"]),
    (["frobnicate"], ["invalid choice"]),
    (["stop-node"], ["name"]),
])
def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                          words: list[str]) -> None:
    code, out, err = run_cli(capsys, *args, "--dir", str(tmp_path / "c")) if args[0] != "frobnicate" \
        else run_cli(capsys, *args)
    assert code == 2 and out == ""
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "c").exists()


def test_cli_up_bad_spec_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "up", "--node", "trn2.48xlarge:lnc9", "--dir", str(tmp_path / "c"))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "'lnc9'" in err and "lnc1, lnc2" in err
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------------------------------------- damaged records


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process (its own session, like what the launcher starts) that must never be signalled."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def good_state(where: Path, head_process: dict[str, Any] | None = None) -> dict[str, Any]:
    """A well-formed record of a stopped two-node cluster in ``where`` (what ``up`` writes)."""
    specs = cluster.parse_node_specs(["trn1.2xlarge", "inf2.xlarge"])
    state = launcher._new_state(where, specs, 2, True)
    state["head"]["process"] = head_process
    for node, cores in zip(state["nodes"], (2, 2), strict=True):
        node["neuron_cores"] = cores
    return state


def write_record(where: Path, content: bytes | dict[str, Any]) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / "cluster.json").write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())


def test_a_well_formed_stopped_cluster_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "c"
    write_record(where, good_state(where))
    info = cluster.read_cluster(where)
    assert not info.head_running and [n.name for n in info.nodes] == ["trn1-0", "inf2-1"]
    assert not any(n.running for n in info.nodes)
    assert info.node("inf2-1").instance == "inf2.xlarge"
    with pytest.raises(cluster.ClusterError, match=r"no node 'nope'.*trn1-0, inf2-1"):
        info.node("nope")
    code, out, err = run_cli(capsys, "status", "--dir", str(where))
    assert code == 0 and "NOT RUNNING" in out and "stopped" in out
    code, out, err = run_cli(capsys, "stop-node", "nope", "--dir", str(where))
    assert code == 1 and "no node 'nope'" in err and "trn1-0, inf2-1" in err
    code, out, err = run_cli(capsys, "stop-node", "inf2-1", "--dir", str(where))
    assert code == 1 and "not running" in err and "start-node inf2-1" in err
    code, out, err = run_cli(capsys, "down", "--dir", str(where))
    assert code == 0 and "2 node(s)" in out
    assert not (where / "cluster.json").exists()


def _damaged(where: Path) -> list[tuple[str, bytes | dict[str, Any]]]:
    good = good_state(where)

    def edit(path: str, value: Any) -> dict[str, Any]:
        state = json.loads(json.dumps(good))
        target = state
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[keys[-1] if not isinstance(target, list) else int(keys[-1])] = value
        return state

    return [
        ("garbage", b"\x00\xff not json {{{"),
        ("empty", b""),
        ("a list", b"[1, 2, 3]"),
        ("deep nesting", b"[" * 100000 + b"]" * 100000),
        ("huge", b'{"version": 1, "pad": "' + b"x" * (5 << 20) + b'"}'),
        ("future version", edit("version", 99)),
        ("another directory", edit("directory", "/elsewhere")),
        ("port as text", edit("gcs_port", "6379")),
        ("port out of range", edit("dashboard_port", 70000)),
        ("boolean port", edit("client_port", True)),
        ("nodes not a list", edit("nodes", {"a": 1})),
        ("no nodes", edit("nodes", [])),
        ("node not an object", edit("nodes", [1, 2])),
        ("node name with a slash", edit("nodes.0.name", "../../etc")),
        ("root outside", edit("nodes.0.root", "/")),
        ("pid as text", edit("nodes.1.process", {"pid": "1", "started": 0})),
        ("negative cores", edit("nodes.1.neuron_cores", -4)),
        ("head missing", edit("head", None)),
        ("exporters as text", edit("exporters", "yes")),
        ("config as number", edit("prometheus_config", 5)),
    ]


def test_damaged_record_is_one_clear_error_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "c"
    for what, content in _damaged(where):
        write_record(where, content)
        with pytest.raises(cluster.ClusterError) as caught:
            cluster.read_cluster(where)
        assert str(where / "cluster.json") in str(caught.value), what
        for action in (["status"], ["status", "--json"], ["status", "--ports"], ["down"], ["stop-node", "trn1-0"]):
            code, out, err = run_cli(capsys, *action, "--dir", str(where))
            assert code == 1 and out == "", (what, action, out)
            assert "cluster.json" in err and "Traceback" not in err, (what, action, err)
            assert len(err) < 2000, (what, action)
        assert (where / "cluster.json").exists()  # a record it cannot read is left for the user to inspect


def test_recorded_pid_of_an_unrelated_process_is_never_signalled(tmp_path: Path, bystander: subprocess.Popen[bytes],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "c"
    started = psutil.Process(bystander.pid).create_time()
    me = {"pid": os.getpid(), "started": 0.0}  # this test process, with a start time that is not its own
    recycled = {"pid": bystander.pid, "started": started - 3600.0}  # the pid, but another process's start time
    for head in (recycled, me, {"pid": 1, "started": 0.0}, {"pid": 2**31 - 1, "started": 0.0}):
        state = good_state(where, head)
        state["nodes"][0]["process"] = recycled
        state["nodes"][1]["exporter"] = recycled
        write_record(where, state)
        info = cluster.read_cluster(where)
        assert not info.head_running and not any(n.running for n in info.nodes)
        assert cluster.listening_sockets(where) == []
        code, _out, err = run_cli(capsys, "start-node", "trn1-0", "--dir", str(where))
        assert code == 1 and "head" in err and "not running" in err
        assert cluster.down(where).directory == where
        assert bystander.poll() is None, "the unrelated process was signalled"


def test_down_of_leftover_record_removes_only_cluster_files(tmp_path: Path) -> None:
    where = tmp_path / "c"
    state = good_state(where)
    write_record(where, state)
    keep = where / "notes.txt"
    keep.write_text("mine")
    (where / "nodes" / "trn1-0").mkdir(parents=True)
    (where / "logs").mkdir()
    cluster.down(where)
    assert sorted(p.name for p in where.iterdir()) == [".lock", "notes.txt"]


# ---------------------------------------------------------------------------------------------- monitoring config


def served_series() -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Every sample neuron-monitor-prometheus serves for a busy node: name -> set of its label (name, value)s."""
    collector = NeuronMonitorCollector()
    collector.update(report(runtime_entry(10, "app", completed=3), ecc=1))
    text = generate_latest(make_registry(collector, process_metrics=False)).decode()
    served: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served.setdefault(sample.name, set()).add(tuple(sorted(sample.labels.items())))
    return served


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def test_dashboard_queries_name_only_what_the_exporter_serves() -> None:
    served = served_series()
    dashboard = cluster_dashboard()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "node")
    exprs.append(variable["definition"].replace("label_values(instance_info, node)", 'instance_info{node=~".*"}'))
    assert len(exprs) == 7
    for expr in exprs:
        selectors = _SELECTOR.findall(expr)
        assert selectors, expr
        for metric, matchers in selectors:
            assert metric in served, f"{metric} (in {expr}) is not served; served: {sorted(served)}"
            labels = {name for series in served[metric] for name, _value in series} | {"node"}  # node: Prometheus
            for name, op, value in _MATCHER.findall(matchers):
                assert name in labels, f"label {name} of {metric} (in {expr}) is not served"
                if op == "=":  # a fixed value must be one the exporter uses
                    values = {v for series in served[metric] for n, v in series if n == name}
                    assert value in values, f"{name}={value!r} of {metric}: served values {sorted(values)}"
        for grouped in re.findall(r"by \(([^)]*)\)", expr):
            assert {g.strip() for g in grouped.split(",")} <= {"node"}, expr
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(set(titles)) == len(titles) and len({p["id"] for p in dashboard["panels"]}) == len(titles)


def test_prometheus_config_scrapes_every_node_labelled(tmp_path: Path) -> None:
    where = tmp_path / "c"
    state = good_state(where)
    config = prometheus_config(state)
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert set(jobs) == {"neuron", "ray"}
    assert [(c["labels"]["node"], c["targets"]) for c in jobs["neuron"]] == [
        (n["name"], [f"127.0.0.1:{n['ports']['exporter']}"]) for n in state["nodes"]]
    assert [c["labels"]["node"] for c in jobs["ray"]] == ["head", "trn1-0", "inf2-1"]
    assert all(t.startswith("127.0.0.1:") for job in jobs.values() for c in job for t in c["targets"])
    path = write_monitoring_config(where, state)
    text = path.read_text()
    assert text.startswith("# ") and json.loads(text.split("\n", 1)[1]) == config  # YAML written as JSON
    dashboards = where / "grafana" / "dashboards"
    assert json.loads((dashboards / "neuron-cluster-dashboard.json").read_text())["uid"] == "nrt-lab-cluster"
    assert json.loads((dashboards / "neuron-dashboard.json").read_text())["panels"]
    source = (where / "grafana" / "provisioning" / "datasources" / "nrt-lab.yaml").read_text()
    assert '"url": "http://127.0.0.1:9090"' in source


def test_listening_socket_loopback_rule() -> None:
    def sock(address: str) -> cluster.ListeningSocket:
        return cluster.ListeningSocket("head", 1, "raylet", address, 1)

    assert sock("127.0.0.1").loopback and sock("127.5.0.1").loopback and sock("::1").loopback
    assert sock("::ffff:127.0.0.1").loopback
    assert not sock("0.0.0.0").loopback and not sock("::").loopback and not sock("10.0.0.1").loopback


def test_stop_sessions_never_waits_for_a_stopped_world(tmp_path: Path) -> None:
    """A leader whose children ignore SIGTERM: down's grace, then SIGKILL, and nothing of the session is left."""
    script = ("import signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, "
              "signal.SIG_IGN); time.sleep(60)'])\n"
              "time.sleep(60)\n")
    record = launcher._launch([sys.executable, "-c", script], dict(os.environ), tmp_path / "log")
    deadline = time.monotonic() + 20
    while len(launcher._session_members(record)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = launcher._session_members(record)
    assert len(members) == 2
    start = time.monotonic()
    launcher._stop_sessions([record], kill=False, grace_s=0.5)
    assert time.monotonic() - start < 5
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in members)
    assert not launcher._alive(record)


# ---------------------------------------------------------------------------------------------- the demo job


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"model": "gpt5"}, ["'gpt5'", "mlp"]),
    ({"engine": "spark"}, ["'spark'", "actors, data"]),
    ({"batches": 0}, ["batches 0", "1 to 100000"]),
    ({"batches": True}, ["batches True"]),
    ({"workers": 65}, ["workers 65", "1 to 64"]),
    ({"cores_per_worker": "2"}, ["cores_per_worker '2'"]),
])
def test_batch_inference_refuses_bad_arguments(kwargs: dict[str, Any], words: list[str]) -> None:
    from nrt_lab.cluster.jobs import batch_inference

    with pytest.raises(cluster.ClusterError) as caught:
        batch_inference(**kwargs)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


def test_batch_inference_needs_a_driver() -> None:
    pytest.importorskip("ray")
    import ray

    from nrt_lab.cluster.jobs import batch_inference

    assert not ray.is_initialized()
    with pytest.raises(cluster.ClusterError, match=r"connect\(\)"):
        batch_inference("mlp", 2)
    assert not ray.is_initialized()  # asking started nothing


def test_batch_predictor_runs_a_batch_without_ray(machine_root: Path) -> None:
    """The job's worker class is plain Python: on this test's machine it claims a core and computes right."""
    import numpy as np

    from nrt_lab.cluster.jobs import BatchPredictor
    from nrt_lab.models import example_inputs, reference

    for neuron in (True, False):
        worker = BatchPredictor("mlp", seed=7, neuron=neuron)
        try:
            row = worker.predict(3)
            assert worker.ready() == row["node"] == "nrt-state"  # no Ray: the machine root's name
            expected = reference("mlp", example_inputs("mlp", seed=10))["probs"]
            np.testing.assert_allclose(row["output"], expected, rtol=1e-4, atol=1e-5)
            rows = worker({"id": np.array([0, 1])})
            assert rows["index"].tolist() == [0, 1] and rows["output"].shape == (2, 32, 10)
        finally:
            worker.close()


def test_a_restart_waits_for_its_own_started_line(tmp_path: Path) -> None:
    """A node's log is appended to: the previous start's 'Ray runtime started.' must not count for this one."""
    log = tmp_path / "node.log"
    log.write_text("Ray runtime started.\n")
    record = launcher._launch([sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ), log)
    try:
        with pytest.raises(cluster.ClusterError, match="did not start in time"):
            launcher._wait_started(record, log, "node x", time.monotonic() + 0.5)
        with open(log, "a") as out:
            out.write("Ray runtime started.\n")
        launcher._wait_started(record, log, "node x", time.monotonic() + 10)
    finally:
        launcher._stop_sessions([record], kill=True)
