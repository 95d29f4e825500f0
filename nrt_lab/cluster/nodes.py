"""What a cluster is made of: node specs (``[NAME=]INSTANCE[:lncN]``) parsed and checked before anything starts.

Parsing is separate from launching so that a typo fails in milliseconds with one line naming the bad spec and what
is accepted, instead of after a Ray head has started (docs/cluster.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from nrt_lab.hardware import CatalogueError, get_instance, instance_names

__all__ = ["MAX_NODES", "NAME_PATTERN", "ClusterError", "NodeSpec", "parse_node_spec", "parse_node_specs"]

# Each emulated node is a real Ray node (raylet, agents, workers: ~300 MB and a few processes); more than this on
# one machine only thrashes it.
MAX_NODES = 8
NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,23}")
"""What a node name may be (it becomes a directory name, a Ray label value and a Prometheus label value)."""
_SPEC = re.compile(r"(?:(?P<name>[^=]*)=)?(?P<instance>[^:=]*)(?::(?P<option>.*))?")
SPEC_SYNTAX = "[NAME=]INSTANCE[:lncN], e.g. trn1.32xlarge, trn2.48xlarge:lnc1, edge=inf2.xlarge"


class ClusterError(Exception):
    """A cluster cannot be described, started, reached or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class NodeSpec:
    """One emulated machine of the cluster: its node name, instance type and logical-NeuronCore config."""

    name: str
    instance: str
    lnc: int

    @property
    def text(self) -> str:
        """The spec written back in the syntax it was parsed from (names are always explicit)."""
        spec = get_instance(self.instance, self.lnc)
        default_lnc = get_instance(self.instance).lnc
        return f"{self.name}={self.instance}" + ("" if spec.lnc == default_lnc else f":lnc{self.lnc}")


def parse_node_spec(text: str, default_name: str) -> NodeSpec:
    """One ``[NAME=]INSTANCE[:lncN]``; ``default_name`` names it when NAME is absent."""
    match = _SPEC.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not match["instance"]:
        raise ClusterError(f"node spec {text!r} is not {SPEC_SYNTAX}")
    name = match["name"] if match["name"] is not None else default_name
    if not NAME_PATTERN.fullmatch(name):
        raise ClusterError(
            f"node name {name!r} in {text!r}: a name is 1-24 lower-case letters, digits and '-', starting with a letter"
        )
    lnc: int | None = None
    option = match["option"]
    if option is not None:
        lnc_match = re.fullmatch(r"lnc([12])", option.strip().lower())
        if lnc_match is None:
            raise ClusterError(f"node spec {text!r}: option {option!r} is not accepted (accepted: lnc1, lnc2)")
        lnc = int(lnc_match[1])
    try:
        spec = get_instance(match["instance"], lnc)
    except CatalogueError as exc:
        raise ClusterError(f"node spec {text!r}: {exc}") from None
    return NodeSpec(name=name, instance=spec.name, lnc=spec.lnc)


def parse_node_specs(texts: Sequence[str]) -> list[NodeSpec]:
    """Every node of a cluster, names defaulting to ``<family>-<position>`` (trn1-0, inf2-1, ...), all distinct."""
    if not texts:
        raise ClusterError(f"a cluster needs at least one node ({SPEC_SYNTAX})")
    if len(texts) > MAX_NODES:
        raise ClusterError(f"{len(texts)} nodes asked for; at most {MAX_NODES} emulated nodes run on one machine")
    specs: list[NodeSpec] = []
    for position, text in enumerate(texts):
        instance = str(text).split("=", 1)[-1].split(":", 1)[0].strip().lower()
        family = instance.split(".", 1)[0] if instance in instance_names() else "node"
        specs.append(parse_node_spec(text, f"{family}-{position}"))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ClusterError(f"node name {spec.name!r} is used twice; names must be distinct")
        if spec.name == "head":
            raise ClusterError("node name 'head' is the Ray head's; choose another")
        seen.add(spec.name)
    return specs
