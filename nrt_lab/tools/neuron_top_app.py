"""neuron-top's terminal app (textual): widgets that redraw from the latest cached snapshot.

Sampling is decoupled from drawing: a timer starts a background thread that takes one :class:`Monitor` sample
every ``period`` seconds and posts it to the app; widgets only re-render from that cached snapshot (on a new
sample, a key or a resize). Imported only when the UI starts (textual is slow to import).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from nrt_lab.monitor import MachineSnapshot, Monitor, diagnose
from nrt_lab.monitor.top import (
    ALL_TAB,
    MemoryNode,
    Tab,
    core_cells,
    daemon_labels,
    daemon_rows,
    findings_summary,
    memory_nodes,
    selected_runtimes,
    tabs_of,
)
from nrt_lab.tools.neuron_top_render import (
    DETAILS_NAME_WIDTH,
    FIXED_ROWS,
    MIN_TREE_ROWS,
    details_header_text,
    memory_summary_text,
    nc_grid_text,
    nc_header_text,
    node_row,
    tab_bar_text,
    title_text,
    vcpu_text,
)

__all__ = ["NeuronTopApp", "SnapshotReady"]


class SnapshotReady(Message):
    """Posted by the sampling thread: a new snapshot, or the error that prevented it."""

    def __init__(self, snapshot: MachineSnapshot | None, error: str = "", findings: str = "") -> None:
        super().__init__()
        self.snapshot = snapshot
        self.error = error
        self.findings = findings  # diagnose()'s errors and warnings in one line ("" when nothing is wrong)


class _MemoryTree(Tree[str]):
    """The Memory Usage Details tree: rows aligned on the column titles; left/right fold and unfold."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "fold", "Collapse", show=False),
        Binding("right", "unfold", "Expand", show=False),
    ]

    def action_fold(self) -> None:
        """Left: collapse the node under the cursor, or move to its parent."""
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.children:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def action_unfold(self) -> None:
        """Right: expand the node under the cursor."""
        node = self.cursor_node
        if node is not None and node.allow_expand:
            node.expand()


class NeuronTopApp(App[int]):
    """The neuron-top terminal UI; ``snapshot`` is the latest sample, the only thing widgets draw from."""

    TITLE = "neuron-top"
    CSS = """
    Screen { layout: vertical; overflow: hidden; }
    #title { height: 1; background: $primary-background; }
    #nc-header, #tabs { height: 1; }
    #nc-scroll { height: 1; scrollbar-size-vertical: 1; }
    #nc-grid { height: auto; }
    #vcpu { height: 3; }
    #memory { height: 8; }
    #details-header { height: 2; }
    #tree { height: 1fr; padding: 0; scrollbar-size-vertical: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("F", "toggle_units", "% / TFLOPS"),
        Binding("x", "toggle_tree", "Expand/collapse all"),
        Binding("a", "previous_tab", "Previous tab", show=False),
        Binding("d", "next_tab", "Next tab", show=False),
        *[Binding(str(i), f"select_tab({i})", f"Tab {i}", show=False) for i in range(1, 10)],
    ]
    HINT = "1-9/a/d tab  F %/TF  x tree  q quit"

    def __init__(self, *, period: float = 1.0, tag_filter: str | None = None, root: Path | str | None = None,
                 monitor: Monitor | None = None, addresses: Sequence[str] = ()) -> None:
        """``period`` seconds between samples; ``tag_filter`` keeps runtimes whose tag matches the regex;
        Runtime 1.x daemons (at ``addresses`` or elsewhere) get tabs labelled ``neuron-rtd <address>``."""
        super().__init__()
        self.addresses = tuple(addresses)
        self.labels: dict[int, str] = {}
        self.period = period
        self.tag_filter = tag_filter
        self.monitor = monitor if monitor is not None else Monitor(Path(root) if root is not None else None)
        self.snapshot: MachineSnapshot | None = None
        self.error = ""
        self.findings = ""
        self.samples = 0
        self.show_flops = False
        self.active_key = ALL_TAB
        self._sampling = False
        self._drawable = False
        self._known: set[str] = set()
        self._tree_shape: list[tuple[str, str | None]] = []

    # -- layout
    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield Static(id="nc-header")
        with VerticalScroll(id="nc-scroll", can_focus=False):
            yield Static(id="nc-grid")
        yield Static(id="vcpu")
        yield Static(id="memory")
        yield Static(id="details-header")
        tree: _MemoryTree = _MemoryTree("memory", id="tree")
        tree.show_root = False
        tree.guide_depth = 2
        yield tree
        yield Static(id="tabs")

    def on_mount(self) -> None:
        self.query_one("#tree", Tree).focus()
        self._drawable = True
        self.refresh_view()
        self._request_sample()
        self.set_interval(self.period, self._request_sample)

    def on_resize(self) -> None:
        self.refresh_view()

    # -- sampling (a worker thread), decoupled from drawing
    def _request_sample(self) -> None:
        if self._sampling:
            return
        self._sampling = True
        self.run_worker(self._sample_in_thread, thread=True, group="sample", exit_on_error=False)

    def _sample_in_thread(self) -> None:
        try:
            snapshot = self.monitor.sample(self.tag_filter)
            self.labels = daemon_labels(daemon_rows(self.monitor.machine.owners(), snapshot, self.addresses))
            message = SnapshotReady(snapshot, findings=findings_summary(diagnose(snapshot, os.environ)))
        except Exception as exc:  # noqa: BLE001 - a failed sample is shown, never fatal to the UI
            message = SnapshotReady(None, f"{type(exc).__name__}: {exc}")
        self.post_message(message)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._sampling = False
        self.samples += 1
        if message.snapshot is not None:
            self.snapshot = message.snapshot
            self.error = ""
            self.findings = message.findings
        else:
            self.error = message.error
        self.refresh_view()

    # -- state
    @property
    def tabs(self) -> list[Tab]:
        """The tabs of the latest snapshot."""
        return tabs_of(self.snapshot, self.labels)

    @property
    def active_index(self) -> int:
        """Index of the active tab (``all`` when the selected runtime went away)."""
        for i, tab in enumerate(self.tabs):
            if tab.key == self.active_key:
                return i
        return 0

    def _select(self, index: int) -> None:
        tabs = self.tabs
        if 0 <= index < len(tabs):
            self.active_key = tabs[index].key
            self.refresh_view()

    # -- actions
    def action_select_tab(self, number: int) -> None:
        """Keys 1-9: select the tab at that position of the bar (1 = ``all``)."""
        self._select(number - 1)

    def action_previous_tab(self) -> None:
        """Key a: the tab on the left (wraps around)."""
        self._select((self.active_index - 1) % len(self.tabs))

    def action_next_tab(self) -> None:
        """Key d: the tab on the right (wraps around)."""
        self._select((self.active_index + 1) % len(self.tabs))

    def action_toggle_units(self) -> None:
        """Key F: utilization in percent or in TFLOPS."""
        self.show_flops = not self.show_flops
        self.refresh_view()

    def action_toggle_tree(self) -> None:
        """Key x: expand the whole tree, or collapse it when it is already fully expanded."""
        tree = self.query_one("#tree", Tree)
        expandable = [n for n in _walk(tree.root) if n is not tree.root and n.allow_expand]
        if expandable and all(n.is_expanded for n in expandable):
            for node in expandable:
                node.collapse()
        else:
            tree.root.expand_all()

    # -- drawing (from the cached snapshot only)
    def _grid_rows_available(self) -> int:
        return max(1, self.size.height - FIXED_ROWS - MIN_TREE_ROWS)

    def refresh_view(self) -> None:
        """Redraw every section from the latest snapshot, for the active tab."""
        if not self._drawable:
            return
        width = max(20, self.size.width)
        snapshot = self.snapshot
        tabs = self.tabs
        active = self.active_index
        tab = tabs[active]
        note = self.error or self.findings or ("" if snapshot is not None else "sampling…")
        self.query_one("#title", Static).update(title_text(snapshot, width, note))
        self.query_one("#tabs", Static).update(tab_bar_text(tabs, active, width, self.HINT))
        if snapshot is None:
            return
        runtimes = selected_runtimes(snapshot, tab)
        version, cells = core_cells(snapshot, tab.runtime)
        max_rows = self._grid_rows_available()
        grid = nc_grid_text(cells, self.show_flops, max_rows)
        self.query_one("#nc-header", Static).update(nc_header_text(version, cells, self.show_flops, width))
        self.query_one("#nc-grid", Static).update(grid)
        self.query_one("#nc-scroll").styles.height = max(1, min(max_rows, len(grid.plain.split("\n"))))
        self.query_one("#vcpu", Static).update(vcpu_text(snapshot, runtimes, width))
        self.query_one("#memory", Static).update(memory_summary_text(runtimes, width))
        self.query_one("#details-header", Static).update(details_header_text(width))
        self._update_tree(memory_nodes(snapshot, tab.runtime))

    def _update_tree(self, nodes: list[MemoryNode]) -> None:
        tree = self.query_one("#tree", Tree)
        shape: list[tuple[str, str | None]] = []
        flat: list[tuple[MemoryNode, int]] = []

        def walk(node: MemoryNode, parent: str | None, depth: int) -> None:
            shape.append((node.key, parent))
            flat.append((node, depth))
            for child in node.children:
                walk(child, node.key, depth + 1)

        for node in nodes:
            walk(node, None, 0)
        if shape == self._tree_shape:
            by_key = {n.data: n for n in _walk(tree.root) if n.data is not None}
            for node, depth in flat:
                by_key[node.key].set_label(node_row(node, self._label_width(tree, depth, bool(node.children))))
            return
        expanded = {n.data for n in _walk(tree.root) if n.data is not None and n.is_expanded}
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        tree.clear()
        tree.root.expand()
        added: dict[str, TreeNode[str]] = {}

        def add(node: MemoryNode, parent: TreeNode[str], depth: int) -> None:
            label = node_row(node, self._label_width(tree, depth, bool(node.children)))
            if node.children:
                item = parent.add(label, data=node.key)
                for child in node.children:
                    add(child, item, depth + 1)
                # New runtimes open on their NeuronCores; nodes seen before keep their state.
                if node.key in expanded or (node.key not in self._known and depth == 0):
                    item.expand()
            else:
                item = parent.add_leaf(label, data=node.key)
            added[node.key] = item

        for node in nodes:
            add(node, tree.root, 0)
        self._known.update(added)
        self._tree_shape = shape
        if cursor in added:
            self.call_after_refresh(tree.move_cursor, added[cursor])

    @staticmethod
    def _label_width(tree: Tree[str], depth: int, expandable: bool) -> int:
        # The tree draws guide_depth cells per level, plus the expand icon (2 cells) before a parent's label;
        # every row then ends where the column titles end.
        return max(8, 1 + DETAILS_NAME_WIDTH - depth * tree.guide_depth - (2 if expandable else 0))


def _walk(node: TreeNode[str]) -> Iterable[TreeNode[str]]:
    yield node
    for child in node.children:
        yield from _walk(child)
