"""Prometheus and Grafana configuration for a cluster: every node's exporter and Ray's metrics, labelled ``node``.

``nrt-lab cluster up`` runs one ``neuron-monitor | neuron-monitor-prometheus`` per node on its own loopback port;
this module writes what scrapes them: ``prometheus/prometheus.yml`` (job ``neuron``: the exporters; job ``ray``:
each Ray node's metrics port; every target labelled with its node name) and Grafana provisioning (a Prometheus
data source, the single-machine Neuron dashboard and a cluster dashboard with a ``node`` variable). The files are
YAML written as JSON (a subset of YAML), so quoting is never an issue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from nrt_lab.driver import atomic_write_json

__all__ = ["PROMETHEUS_URL", "cluster_dashboard", "prometheus_config", "write_monitoring_config"]

PROMETHEUS_URL = "http://127.0.0.1:9090"  # where the provisioned Grafana data source expects Prometheus
_DATASOURCE_UID = "nrt-lab-prometheus"
_SCRAPE_INTERVAL = "5s"  # neuron-monitor's default period


def prometheus_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """prometheus.yml's content: one target per node exporter and per Ray node, each labelled ``node``."""
    neuron = [{"targets": [f"127.0.0.1:{n['ports']['exporter']}"], "labels": {"node": n["name"]}}
              for n in state["nodes"]]
    head = state["head"]["ports"]
    ray = [{"targets": [f"127.0.0.1:{head[key]}" for key in ("metrics", "autoscaler_metrics", "dashboard_metrics")],
            "labels": {"node": "head"}}]
    ray += [{"targets": [f"127.0.0.1:{n['ports']['metrics']}"], "labels": {"node": n["name"]}} for n in state["nodes"]]
    return {
        "global": {"scrape_interval": _SCRAPE_INTERVAL, "evaluation_interval": _SCRAPE_INTERVAL},
        "scrape_configs": [
            {"job_name": "neuron", "static_configs": neuron},
            {"job_name": "ray", "static_configs": ray},
        ],
    }


def _panel(panel_id: int, title: str, expr: str, unit: str, legend: str, x: int, y: int,
           description: str) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"refId": "A", "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}],
    }


def cluster_dashboard() -> dict[str, Any]:
    """A Grafana dashboard comparing the nodes: busy cores, cores in use, executions/s, p99 latency, memory."""
    sel = 'node=~"$node"'
    panels = [
        _panel(1, "Busy NeuronCores per node", f"sum by (node) (neuroncore_utilization_ratio{{{sel}}})", "none",
               "{{node}}", 0, 0, "Sum of the utilization ratios of the node's cores in use: 3.5 = three and a half "
               "cores' worth of work."),
        _panel(2, "NeuronCores in use per node", f"count by (node) (neuroncore_utilization_ratio{{{sel}}})", "none",
               "{{node}}", 12, 0, "Cores owned by a runtime (a Ray task or actor holding them)."),
        _panel(3, "Executions per second per node",
               f'sum by (node) (rate(execution_status_total{{status_type="completed",{sel}}}[1m]))', "ops",
               "{{node}}", 0, 8, "Completed model executions per second."),
        _panel(4, "p99 latency per node", f'max by (node) (execution_latency_seconds{{percentile="p99",{sel}}})',
               "s", "{{node}}", 12, 8, "The slowest runtime's 99th-percentile execution latency."),
        _panel(5, "Device memory used per node",
               f'sum by (node) (neuron_runtime_memory_used_bytes{{memory_location="neuron_device",{sel}}})',
               "bytes", "{{node}}", 0, 16, "HBM used by the node's runtimes."),
        _panel(6, "Execution errors per second per node", f"sum by (node) (rate(execution_errors_total{{{sel}}}[1m]))",
               "ops", "{{node}}", 12, 16, "Failed executions per second, all error types."),
    ]
    return {
        "uid": "nrt-lab-cluster",
        "title": "Neuron cluster (nrt_lab)",
        "description": "Every emulated node of an nrt-lab cluster side by side (Prometheus label 'node').",
        "tags": ["neuron", "nrt_lab", "ray"],
        "timezone": "browser",
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "schemaVersion": 39,
        "editable": True,
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "node", "label": "Node", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(instance_info, node)", "refId": "node"},
             "definition": "label_values(instance_info, node)", "multi": True, "includeAll": True,
             "allValue": ".*", "current": {}, "hide": 0, "refresh": 2, "options": [], "sort": 1},
        ]},
        "panels": panels,
    }


def _write_text(path: Path, header: str, content: Any) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(f"# {header}\n" + json.dumps(content, indent=2) + "\n", encoding="utf-8")


def write_monitoring_config(directory: Path, state: Mapping[str, Any]) -> Path:
    """Write prometheus.yml and Grafana provisioning under ``directory``; the path of prometheus.yml."""
    config = directory / "prometheus" / "prometheus.yml"
    _write_text(config, "Written by nrt-lab cluster up: `prometheus --config.file=` this file (YAML as JSON).",
                prometheus_config(state))
    grafana = directory / "grafana"
    dashboards = grafana / "dashboards"
    _write_text(grafana / "provisioning" / "datasources" / "nrt-lab.yaml",
                "Grafana data source for the cluster's Prometheus (GF_PATHS_PROVISIONING=<this dir>/..).",
                {"apiVersion": 1, "datasources": [{"name": "Prometheus", "type": "prometheus", "access": "proxy",
                                                   "uid": _DATASOURCE_UID, "url": PROMETHEUS_URL, "isDefault": True}]})
    _write_text(grafana / "provisioning" / "dashboards" / "nrt-lab.yaml",
                "Grafana dashboards of the cluster, loaded from the folder below.",
                {"apiVersion": 1, "providers": [{"name": "nrt-lab", "type": "file", "folder": "nrt_lab",
                                                 "options": {"path": str(dashboards)}}]})
    dashboards.mkdir(mode=0o700, parents=True, exist_ok=True)
    single = resources.files("nrt_lab.tools").joinpath("grafana/neuron-dashboard.json").read_text(encoding="utf-8")
    (dashboards / "neuron-dashboard.json").write_text(single, encoding="utf-8")
    atomic_write_json(dashboards / "neuron-cluster-dashboard.json", cluster_dashboard())
    return config
