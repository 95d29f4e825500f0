"""Browser tests: the widgets render and update in a real JupyterLab and in Voila, seen through Debian's chromium.

``test_widgets_render_and_update_in_jupyterlab`` starts its own JupyterLab on 127.0.0.1 (free port, known token,
temporary config/data/runtime dirs, an app-settings ``overrides.json`` that turns off the news/update pop-ups and
cell windowing, a fresh emulated machine in ``NRT_LAB_ROOT``), opens ``tests/browser/widgets.ipynb`` in headless
chromium through Playwright, waits until the status bar says the kernel is idle (a click right after the
notebook opens can be lost), runs all cells from the Run menu and then checks in the page that

* the CoreMap shows the machine's two NeuronCores, this kernel's core outlined (``.nrtw-cell.me``) with its
  tag, and a legend row for this kernel (badge, tag, and the kernel id that ``/api/sessions`` reports);
* the TopView shows the same cores and keeps changing: the notebook's background workload thread executes a
  model on this kernel's core, so its utilization is above zero and its "completed" execution count grows
  between two readings at least two seconds apart;
* the page asked nothing of any host other than 127.0.0.1.

It then saves the notebook (Ctrl+S; the saved outputs name the widget models, whose state lives in the kernel)
and checks that a **second view** (the same notebook opened in a second tab) and then a **reload** of the first
tab show the *current* state: the CoreMap as above, and a TopView whose very first frame (recorded in the page
by a ``MutationObserver`` installed before the page's own scripts) already counts at least as many completed
executions as the previous view last showed, and which keeps growing. A view built from the widget's first
frame would show the few executions done when the TopView was created.

Last, in the reloaded tab, a new cell runs ``nrt_lab.show(sidecar=True)``: a side panel (the ``sidecar``
package's ``.jupyterlab-sidecar``) opens in JupyterLab's right area with the Dashboard's three widgets, and its
TopView's completed count grows. Then every text of the widgets (notebook and side panel, plotly's chart text
included) is checked against what is behind it (``tests/page_contrast.py``, the check test_widget_front.py
uses: at least 4.5:1) in JupyterLab Light, and again after Settings → Theme → JupyterLab Dark (the command
``apputils:change-theme`` through ``window.jupyterapp``, exposed by ``--LabApp.expose_app_in_browser``).

``test_widgets_render_and_update_in_voila`` serves a copy of the same notebook with ``voila`` (127.0.0.1, free
port, same environment) and checks that the widgets render from the kernel Voila ran the notebook in: the
CoreMap shows the machine and this kernel (the id of the kernel the page's websocket talks to), and the
TopView's completed count grows. Voila's "lab" template asks a CDN for Font Awesome: that request (and any
other outside 127.0.0.1) is aborted, and only that one is allowed.

Screenshots are always written to ``test-artifacts/browser/`` (git-ignored: ``jupyterlab-widgets.png``,
``jupyterlab-second-view.png``, ``jupyterlab-reload.png``, ``jupyterlab-sidecar.png``, ``jupyterlab-dark.png``,
``voila-widgets.png``); on failure the server log and
the browser console are written beside them. Skipped only when ``/usr/bin/chromium`` or the ``playwright``
module is missing (``scripts/bootstrap.sh`` installs chromium on Debian when run as root). Each test is bounded
by its budget (:data:`BUDGET_S`, :data:`VOILA_BUDGET_S`); every wait is on a condition, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from page_contrast import CONTRAST_JS, MIN_CONTRAST  # noqa: E402 - the helper beside this file

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).resolve().parent / "browser" / "widgets.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
SCREENSHOT = ARTIFACTS / "jupyterlab-widgets.png"
SECOND_VIEW_SCREENSHOT = ARTIFACTS / "jupyterlab-second-view.png"
RELOAD_SCREENSHOT = ARTIFACTS / "jupyterlab-reload.png"
SIDECAR_SCREENSHOT = ARTIFACTS / "jupyterlab-sidecar.png"
DARK_SCREENSHOT = ARTIFACTS / "jupyterlab-dark.png"
VOILA_SCREENSHOT = ARTIFACTS / "voila-widgets.png"
BUDGET_S = 90.0  # the whole JupyterLab test, server start included (teardown excluded)
VOILA_BUDGET_S = 45.0  # the whole Voila test, server start included (teardown excluded)
VIEWPORT = {"width": 1400, "height": 1100}
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"  # a saved output naming a widget model
# Outside requests Voila's own "lab" template makes (Font Awesome from a CDN); aborted, and allowed.
VOILA_TEMPLATE_HOSTS = ("https://cdn.jsdelivr.net/npm/@fortawesome/",)
TAG = "nbtest"  # NEURON_PROCESS_TAG set by the notebook (6 characters: the CoreMap cell shows it whole)
CORES = 2  # trn1.2xlarge, created by the notebook

# JupyterLab 4.6 settings that would otherwise put something over the page (or take cells out of the DOM).
OVERRIDES: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",  # no "Would you like to receive official Jupyter news?" toast
        "checkForUpdates": False,
        "doNotDisturbMode": True,  # no toast at all over the widgets
    },
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},  # every cell stays in the DOM
}

pytestmark = pytest.mark.timeout(BUDGET_S + 60)  # a hard stop above the internal budget (teardown included)
_LOCAL = re.compile(r"^(https?|wss?)://127\.0\.0\.1[:/]|^(data|blob):")
_FOREIGN = re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1[:/])(https?|wss?)://")

# The status bar's kernel item once the notebook's kernel is connected and idle.
KERNEL_IDLE = re.compile(r"\| Idle$")
# One code cell's prompt once it has run: "[3]:"; "[*]:" while it runs, "[ ]:" before.
_RUN_PROMPT = re.compile(r"^\[\d+\]:$")

# Reads the TopView from the DOM (classes and layout from nrt_lab/widgets/static/top_view.js): core 0's
# cell (text "37%", title "nc0: 37.2 % · ...") and this kernel's row of the executions table (tag column is
# the 3rd cell, "completed" the 6th).
_READ_TOP_VIEW_JS = """
(tag, scope) => {
  const root = [...(scope || document).querySelectorAll(".nrtw")].find(
    (el) => /Utilization/.test((el.querySelector(".nrtw-title") || {}).textContent || ""));
  if (!root) return null;
  const cells = [...root.querySelectorAll(".nrtw-grid .nrtw-cell")];
  const rows = [...root.querySelectorAll("table tr")].filter(
    (tr) => tr.children.length > 5 && tr.children[2].textContent === tag);
  const util = cells.length ? /^nc0: ([0-9.]+) %/.exec(cells[0].title) : null;
  return {
    cells: cells.length,
    text: cells.map((c) => c.textContent),
    util: util ? Number(util[1]) : null,
    completed: rows.length ? Number(rows[0].children[5].textContent) : null,
    live: !!root.querySelector(".nrtw-dot.live"),
    t: performance.now(),
  };
}
"""

# Installed before a page's own scripts (``add_init_script``): records the TopView's first frame that has this
# kernel's row, i.e. what the view drew from the model's state before (or with) the first deltas it applied.
_RECORD_FIRST_FRAME_JS = f"""
(() => {{
  const read = {_READ_TOP_VIEW_JS};
  window.__nrtFirstTop = null;
  const observer = new MutationObserver(() => {{
    if (!document.querySelector(".nrtw")) return;
    const r = read({json.dumps(TAG)});
    if (r && r.completed !== null) {{ window.__nrtFirstTop = r; observer.disconnect(); }}
  }});
  observer.observe(document, {{ childList: true, subtree: true, characterData: true }});
}})();
"""


class Budget:
    """The test's time budget: each wait gets what is left (capped), in Playwright's milliseconds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def ms(self, cap_s: float) -> float:
        left = self.left()
        if left <= 0:
            pytest.fail(f"the test's {self.seconds:.0f} s budget is spent")
        return min(cap_s, left) * 1000.0

    def elapsed(self) -> float:
        return time.monotonic() - self.start


@dataclass
class Server:
    """A server (JupyterLab or Voila) started by a test."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    steps: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Lab(Server):
    """A running JupyterLab server started by this test."""

    token: str = ""
    notebook: str = NOTEBOOK.name

    def api(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``/api/<path>`` as JSON (straight to 127.0.0.1, whatever proxy the environment names)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(f"{self.base}/api/{path}", headers={"Authorization": f"token {self.token}"})
        with opener.open(request, timeout=timeout) as response:
            return json.loads(response.read().decode())


def _require_browser() -> ModuleType:
    """``playwright.sync_api``, or skip when chromium or the playwright module is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium; scripts/bootstrap.sh does it as root)")
    try:
        import playwright.sync_api as sync_api
    except ImportError:
        pytest.skip("the playwright Python module is missing (pip install -e '.[test]')")
    return sync_api


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[tuple[int, str]]:
    """Direct children of ``pid`` as (pid, start time from /proc) pairs, to tell a reused pid apart."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((int(entry.name), fields[19]))
    return found


def _kill_if_same(pid: int, start: str) -> None:
    with contextlib.suppress(OSError, IndexError):
        if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19] == start:
            os.kill(pid, signal.SIGKILL)


def _lab_environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON") and not k.lower().endswith("_proxy")}
    for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                      ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"), ("NRT_LAB_ROOT", "machine")):
        path = tmp / sub
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"  # idle BLAS threads spin: on 2 cores a 25 % workload would otherwise take over 1 core
    return env


def _shut_down(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server (it shuts its kernels down on SIGTERM), kill it if it lingers, then any kernel left."""
    kernels = _children(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for pid, start in kernels:  # kernels also exit by themselves once their parent is gone
        _kill_if_same(pid, start)


def _wait_until_up(server: Server, budget: Budget, probe: Callable[[], object], what: str) -> bool:
    """Until ``probe()`` succeeds (True) or the server exits (False); fails when the budget is spent."""
    deadline = time.monotonic() + min(45.0, budget.left())
    while server.proc.poll() is None:
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            probe()
            return True
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within {budget.elapsed():.0f} s:\n{server.log_tail()}")
        time.sleep(0.25)
    return False


def _tcp_probe(port: int) -> Callable[[], object]:
    """Connects to the port: Voila answers ``/`` only by running the notebook, so do not GET anything."""
    def probe() -> object:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return True
    return probe


S = TypeVar("S", bound=Server)


@contextlib.contextmanager
def _running_server(what: str, budget: Budget, log: Path, cwd: Path, env: dict[str, str],
                    command: Callable[[int], list[str]], make: Callable[[subprocess.Popen[bytes], int], S],
                    probe: Callable[[S], Callable[[], object]]) -> Iterator[S]:
    """Start ``command(port)`` on a free port (3 tries: another process can take the port before the server
    binds it) and wait until ``probe`` answers; always shut the server down (terminate, kill)."""
    proc: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(1, 4):
            port = _free_port()
            with log.open("wb") as out:
                proc = subprocess.Popen(command(port), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
            server = make(proc, port)
            if _wait_until_up(server, budget, probe(server), what) or attempt == 3 \
                    or "already in use" not in server.log_tail():
                break
        assert proc is not None
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} while starting:\n{server.log_tail()}")
        server.steps.append(f"{what} up after {budget.elapsed():.1f} s")
        yield server
    finally:
        if proc is not None:
            _shut_down(proc)


@contextlib.contextmanager
def running_lab(tmp: Path, budget: Budget) -> Iterator[Lab]:
    """Start JupyterLab on 127.0.0.1 with a copy of the test notebook; always shut it down (terminate, kill)."""
    root = tmp / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = tmp / "app-settings"
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES, indent=2))
    token = secrets.token_hex(16)

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.app_settings_dir={settings}", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: its commands add a cell, change the theme
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ]

    with _running_server("JupyterLab", budget, tmp / "jupyterlab.log", root, _lab_environment(tmp), command,
                         lambda proc, port: Lab(proc=proc, port=port, log=tmp / "jupyterlab.log", token=token),
                         lambda lab: lambda: lab.api("status", timeout=2.0)) as lab:
        yield lab


@contextlib.contextmanager
def running_voila(tmp: Path, budget: Budget) -> Iterator[Server]:
    """Start Voila on 127.0.0.1 serving a copy of the test notebook; always shut it down (terminate, kill)."""
    root = tmp / "root"
    root.mkdir()
    notebook = root / NOTEBOOK.name
    shutil.copy(NOTEBOOK, notebook)

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "voila", "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
                "--Voila.port_retries=0", "--show_tracebacks=True", str(notebook)]

    with _running_server("Voila", budget, tmp / "voila.log", root, _lab_environment(tmp), command,
                         lambda proc, port: Server(proc=proc, port=port, log=tmp / "voila.log"),
                         lambda server: _tcp_probe(server.port)) as server:
        yield server


def _save_artifacts(page: Page | None, screenshot: Path, server: Server, console: list[str], failed: bool,
                    prefix: str = "") -> None:
    """The screenshot of ``page`` (when given); the server log and the browser console too when the test failed
    (``<prefix>jupyterlab-server.log`` or ``voila-server.log``, ``<prefix>browser-console.log``)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server_log, console_log = f"{prefix or 'jupyterlab-'}server.log", f"{prefix}browser-console.log"
    for stale in (server_log, console_log):
        (ARTIFACTS / stale).unlink(missing_ok=True)
    if page is not None:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(screenshot), timeout=10_000)
    if failed:
        with contextlib.suppress(OSError):
            shutil.copy(server.log, ARTIFACTS / server_log)
        (ARTIFACTS / console_log).write_text("\n".join(console) + "\n")


def _run_all_cells(page: Page, budget: Budget, steps: list[str]) -> None:
    """Run → Run All Cells, the way a person does it, retried (at most 3 times) while the click goes nowhere.

    The command is enabled only while the notebook is the shell's current widget, which follows focus: click
    the first cell's prompt first, and open the menu again if the item still shows as disabled.
    """
    started = ("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
               ".some((p) => /\\[(\\*|\\d+)\\]/.test(p.textContent))")
    item = page.get_by_role("menuitem", name="Run All Cells", exact=True)
    for attempt in range(1, 4):
        page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click(timeout=budget.ms(10))
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click(timeout=budget.ms(10))
        item.wait_for(state="visible", timeout=budget.ms(10))
        if "lm-mod-disabled" in (item.get_attribute("class") or ""):
            steps.append(f"Run All Cells disabled at attempt {attempt}")
            page.keyboard.press("Escape")
            page.wait_for_function("() => !document.querySelector('.lm-Menu')", timeout=budget.ms(5))
            continue
        item.click(timeout=budget.ms(10))
        try:
            page.wait_for_function(started, timeout=budget.ms(10))
            return
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: nothing started, try again
            steps.append(f"Run All Cells clicked but no cell started at attempt {attempt}")
    pytest.fail("Run → Run All Cells did not start the notebook: " + "; ".join(steps))


def _wait_cells_done(page: Page, budget: Budget, code_cells: int) -> None:
    """Until every code cell shows an execution count, or a cell shows a traceback (then fail with it)."""
    page.wait_for_function(
        """(n) => {
          const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map((p) => p.textContent.trim());
          const failed = [...document.querySelectorAll('.jp-OutputArea-output')].some((o) => /Traceback|Error:/.test(o.textContent));
          return failed || (prompts.length === n && prompts.every((p) => /^\\[\\d+\\]:$/.test(p)));
        }""",
        arg=code_cells, timeout=budget.ms(45))
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    errors = [text for text in stderr if "Traceback" in text or "Error" in text]
    assert not errors, "a notebook cell failed:\n" + "\n---\n".join(errors)
    prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
    assert all(_RUN_PROMPT.match(p) for p in prompts), f"cells not all run: {prompts}"


def _check_core_map(page: Page, budget: Budget, sync_api: ModuleType, kernel_id: str) -> None:
    """The machine, this kernel's core (outlined, tagged) and its legend row with ``kernel_id``; live."""
    expect = sync_api.expect
    core_map = page.locator(".nrtw", has=page.locator(".nrtw-title", has_text="NeuronCore map"))
    expect(core_map).to_have_count(1, timeout=budget.ms(20))
    expect(core_map.locator(".nrtw-bar").first).to_contain_text(
        f"trn1.2xlarge · lnc 1 · {CORES} cores on 1 devices · 1 owned, 1 free", timeout=budget.ms(15))
    cells = core_map.locator(".nrtw-grid .nrtw-cell")
    expect(cells).to_have_count(CORES, timeout=budget.ms(10))
    mine = core_map.locator(".nrtw-grid .nrtw-cell.me")
    expect(mine).to_have_count(1, timeout=budget.ms(10))
    expect(mine).to_have_text(f"0{TAG}", timeout=budget.ms(10))  # core 0 (first fit), labelled with the tag
    expect(cells.nth(1)).to_have_text("1·")  # core 1 is free
    row = core_map.locator("tr", has=page.locator(".nrtw-badge", has_text="this kernel"))
    expect(row).to_have_count(1, timeout=budget.ms(10))
    expect(row.locator("td").nth(2)).to_have_text(TAG)
    expect(row.locator(f'td[title="{kernel_id}"]')).to_have_count(1)  # the kernel id of this notebook's session
    expect(core_map.locator(".nrtw-dot.live")).to_have_count(1, timeout=budget.ms(10))


def _check_top_view(page: Page, budget: Budget, sync_api: ModuleType,
                    at_least: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two readings of the TopView at least 2 s apart while the workload runs; returns them. The first is
    taken once this kernel's completed count is at least ``at_least``."""
    expect = sync_api.expect
    top = page.locator(".nrtw", has=page.locator(".nrtw-title", has_text="Utilization"))
    expect(top).to_have_count(1, timeout=budget.ms(20))
    expect(top.locator(".nrtw-grid .nrtw-cell")).to_have_count(CORES, timeout=budget.ms(10))
    expect(top.locator(".nrtw-dot.live")).to_have_count(1, timeout=budget.ms(10))
    # First reading: once this kernel's executions and core 0's utilization have shown up.
    page.wait_for_function(
        f"""(a) => {{ const r = ({_READ_TOP_VIEW_JS})(a.tag);
              return r && r.completed >= a.atLeast && r.completed > 0 && r.util > 0; }}""",
        arg={"tag": TAG, "atLeast": at_least}, timeout=budget.ms(20))
    first: dict[str, Any] = page.evaluate(_READ_TOP_VIEW_JS, TAG)
    # Second reading: at least 2 s later and only once the page has received newer counts.
    page.wait_for_function(
        f"""(prev) => {{ const r = ({_READ_TOP_VIEW_JS})(prev.tag);
              return r && performance.now() - prev.t >= 2000 && r.completed > prev.completed; }}""",
        arg={**first, "tag": TAG}, timeout=budget.ms(20))
    second: dict[str, Any] = page.evaluate(_READ_TOP_VIEW_JS, TAG)
    assert second["completed"] > first["completed"], (first, second)
    assert second["util"] is not None and second["util"] > 0, second
    assert re.fullmatch(r"0\d+%", second["text"][0]), second["text"]
    assert second["text"][1] == "1·", second["text"]  # the free core
    # The plotly charts are drawn (axes and data) and keep growing; plotly.js reached this page once.
    heat = top.locator(".nrtw-chart-heat")
    expect(heat.locator(".main-svg").first).to_be_visible(timeout=budget.ms(20))
    columns = "(el) => (el.data && el.data[0] && el.data[0].z ? el.data[0].z.length : 0)"
    before = heat.evaluate(columns)
    page.wait_for_function(f"(n) => ({columns})(document.querySelector('.nrtw-chart-heat')) > n", arg=before,
                           timeout=budget.ms(10))
    assert heat.locator(".g-ytitle").first.text_content() == "NeuronCore"
    assert page.evaluate("() => globalThis.__nrtLabPlotlyLoads") == 1
    return first, second


def _launch(pw: Playwright, budget: Budget) -> Browser:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, env=env,
                              timeout=budget.ms(30))


def _new_page(context: BrowserContext, console: list[str], foreign: list[str], name: str) -> Page:
    """A page that logs its console (prefixed with ``name``), notes requests outside 127.0.0.1 in ``foreign``
    and records the TopView's first frame (``window.__nrtFirstTop``) on every load."""
    page = context.new_page()
    page.on("console", lambda msg: console.append(f"[{name}] {msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: console.append(f"[{name}] pageerror: {err}"))
    page.on("request", lambda req: None if _LOCAL.match(req.url) else foreign.append(req.url))
    page.add_init_script(_RECORD_FIRST_FRAME_JS)
    return page


def _scroll_to_core_map(page: Page, cell: str) -> None:
    """Put the CoreMap at the top of the view (``cell``: the selector of the block holding it), TopView under."""
    page.locator(cell, has=page.locator(".nrtw-title", has_text="NeuronCore map")).first.evaluate(
        "(el) => el.scrollIntoView({block: 'start'})")


def _open_notebook(page: Page, lab: Lab, budget: Budget) -> None:
    page.goto(f"{lab.base}/lab/tree/{lab.notebook}?token={lab.token}", wait_until="domcontentloaded",
              timeout=budget.ms(30))
    _wait_kernel_idle(page, budget)


def _wait_kernel_idle(page: Page, budget: Budget) -> None:
    # A click right after the notebook opens can be lost: wait for the kernel to be idle first, as the status
    # bar says it ("Python 3 (ipykernel) | Idle": connected and idle). The toolbar's execution indicator is no
    # use here: it says "idle" before the kernel has even started.
    page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE).wait_for(timeout=budget.ms(45))


def _saved_widget_outputs(lab: Lab) -> int:
    """How many outputs of the notebook on disk name a widget model (0 before the first save)."""
    cells = lab.api(f"contents/{lab.notebook}?content=1")["content"]["cells"]
    return sum(WIDGET_VIEW_MIME in output.get("data", {})
               for cell in cells if cell["cell_type"] == "code" for output in cell.get("outputs", []))


def _save_notebook(page: Page, lab: Lab, budget: Budget) -> None:
    """Ctrl+S in the notebook (command mode), then wait until the file on disk holds both widget outputs."""
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click(timeout=budget.ms(10))
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + min(15.0, budget.left())
    while (saved := _saved_widget_outputs(lab)) < 2:
        if time.monotonic() > deadline:
            pytest.fail(f"Ctrl+S did not save the notebook's widget outputs ({saved} of 2 on disk)")
        time.sleep(0.2)
    clean = "() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')"
    page.wait_for_function(clean, timeout=budget.ms(10))  # nothing for a later reload to ask about


def _check_current_state(page: Page, budget: Budget, sync_api: ModuleType, kernel_id: str, last: int,
                         what: str, steps: list[str]) -> dict[str, Any]:
    """In a view opened after ``last`` completed executions were seen: the CoreMap as in the first view, the
    TopView's first frame at ``last`` or more (the current state, not the first frame the widget ever had) and
    growing from there. Returns the TopView's last reading."""
    _check_core_map(page, budget, sync_api, kernel_id)
    first, second = _check_top_view(page, budget, sync_api, at_least=last)
    frame: dict[str, Any] | None = page.evaluate("() => window.__nrtFirstTop")
    assert frame is not None, f"{what}: the TopView's first frame was not recorded"
    assert frame["completed"] >= last, (
        f"{what}: the TopView's first frame shows {frame['completed']} completed executions, fewer than the "
        f"{last} the previous view had already shown: it was drawn from an old state, not the current one")
    assert frame["cells"] == CORES, frame
    steps.append(f"{what}: first frame completed {frame['completed']} (previous view last showed {last}),"
                 f" then {first['completed']} -> {second['completed']}"
                 f" in {(second['t'] - first['t']) / 1000:.1f} s")
    return second


def _latest_completed(page: Page) -> int:
    reading: dict[str, Any] | None = page.evaluate(_READ_TOP_VIEW_JS, TAG)
    assert reading is not None and reading["completed"] is not None, reading
    return int(reading["completed"])


SIDECAR_CODE = "board = nrt_lab.show(sidecar=True)"  # the cell added at the end (nrt_lab is imported by cell 1)
_SIDECAR = ".jupyterlab-sidecar"  # the sidecar package's panel in JupyterLab's shell (right area)


def _run_new_cell(page: Page, code: str) -> None:
    """A new code cell under the last one with ``code``, run: JupyterLab's own commands, as Shift+Enter runs them."""
    page.evaluate("""async (code) => {
      const app = window.jupyterapp, nb = app.shell.currentWidget.content;
      nb.activeCellIndex = nb.widgets.length - 1;
      await app.commands.execute("notebook:insert-cell-below");
      nb.activeCell.model.sharedModel.setSource(code);
      app.commands.execute("notebook:run-cell");
    }""", code)


def _check_sidecar(page: Page, budget: Budget, sync_api: ModuleType, steps: list[str]) -> None:
    """``nrt_lab.show(sidecar=True)`` in a new cell: a side panel opens in JupyterLab's right area with the
    Dashboard's three widgets, and its TopView shows this kernel's completed executions growing."""
    expect = sync_api.expect
    _run_new_cell(page, SIDECAR_CODE)
    side = page.locator(_SIDECAR)
    expect(side).to_have_count(1, timeout=budget.ms(15))
    expect(side).to_be_visible(timeout=budget.ms(10))
    assert page.locator(f"#jp-right-stack {_SIDECAR}, .jp-SideBar {_SIDECAR}, #jp-main-dock-panel {_SIDECAR}"
                        ).count() == 1, "the side panel is not in JupyterLab's right or main area"
    expect(side.locator(".nrtw")).to_have_count(3, timeout=budget.ms(15))  # DriverStatus, TopView, CoreMap
    # Beside the notebook (split-right), not squeezed into the ~250 px sidebar where the dashboard scrolls.
    width = page.evaluate(f"() => document.querySelector({json.dumps(_SIDECAR)}).getBoundingClientRect().width")
    assert width >= 0.35 * page.viewport_size["width"], f"the side panel is only {width:.0f} px wide"
    expect(side.locator(".nrtw-title", has_text="NeuronCore map")).to_have_count(1)
    expect(side.locator(".nrtw-grid .nrtw-cell")).to_have_count(CORES, timeout=budget.ms(10))
    read = f"(tag) => ({_READ_TOP_VIEW_JS})(tag, document.querySelector({json.dumps(_SIDECAR)}))"
    page.wait_for_function(f"(tag) => {{ const r = ({read})(tag); return r && r.completed > 0 && r.live; }}",
                           arg=TAG, timeout=budget.ms(15))
    first: dict[str, Any] = page.evaluate(read, TAG)
    page.wait_for_function(
        f"""(prev) => {{ const r = ({read})(prev.tag);
              return r && performance.now() - prev.t >= 1000 && r.completed > prev.completed; }}""",
        arg={**first, "tag": TAG}, timeout=budget.ms(15))
    second: dict[str, Any] = page.evaluate(read, TAG)
    steps.append(f"side panel: completed {first['completed']} -> {second['completed']}"
                 f" in {(second['t'] - first['t']) / 1000:.1f} s")


def _change_theme(page: Page, budget: Budget, theme: str) -> None:
    """Settings → Theme, through its command; waits until the page carries the theme and its colours."""
    page.evaluate("(theme) => { window.jupyterapp.commands.execute('apputils:change-theme', { theme }); }", theme)
    page.wait_for_function(
        """(theme) => document.body.dataset.jpThemeName === theme
             && getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim() !== ''
             && (document.body.dataset.jpThemeLight === 'true') === !/Dark/.test(theme)""",
        arg=theme, timeout=budget.ms(15))
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def _check_contrast(page: Page, budget: Budget, theme: str, steps: list[str]) -> None:
    """No text of the widgets (in the notebook and the side panel, plotly's chart text included) below 4.5:1
    against what is behind it, at most 3 s after the theme changed (the charts redraw in the theme's colours)."""
    assert page.evaluate("() => document.body.dataset.jpThemeName") == theme
    selector = ".nrtw, .nrtw *"
    with contextlib.suppress(Exception):  # Playwright's TimeoutError: reported with the offending texts below
        page.wait_for_function(f"(sel) => ({CONTRAST_JS})(sel).bad.length === 0", arg=selector,
                               polling=250, timeout=budget.ms(3))
    result: dict[str, Any] = page.evaluate(CONTRAST_JS, selector)
    steps.append(f"{theme}: {result['checked']} widget texts checked, {len(result['bad'])} below {MIN_CONTRAST}:1")
    assert result["checked"] > 50, result
    assert result["bad"] == [], f"{theme}: widget text below {MIN_CONTRAST}:1: {result['bad']}"


def test_widgets_render_and_update_in_jupyterlab(tmp_path: Path) -> None:
    sync_api = _require_browser()
    budget = Budget(BUDGET_S)
    for stale in (SCREENSHOT, SECOND_VIEW_SCREENSHOT, RELOAD_SCREENSHOT, SIDECAR_SCREENSHOT, DARK_SCREENSHOT):
        stale.unlink(missing_ok=True)  # what is there after the test is from this run
    console: list[str] = []
    foreign: list[str] = []
    with running_lab(tmp_path, budget) as lab, sync_api.sync_playwright() as pw:
        page: Page | None = None
        shot = SCREENSHOT
        failed = True
        browser = _launch(pw, budget)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            page = _new_page(context, console, foreign, "first")
            _open_notebook(page, lab, budget)
            lab.steps.append(f"kernel idle after {budget.elapsed():.1f} s")
            _run_all_cells(page, budget, lab.steps)
            _wait_cells_done(page, budget, code_cells=3)
            lab.steps.append(f"cells run after {budget.elapsed():.1f} s")
            sessions = lab.api("sessions")
            assert len(sessions) == 1, sessions
            kernel_id = sessions[0]["kernel"]["id"]
            _check_core_map(page, budget, sync_api, kernel_id)
            first, second = _check_top_view(page, budget, sync_api)
            lab.steps.append(
                f"TopView after {budget.elapsed():.1f} s: completed {first['completed']} -> {second['completed']}"
                f" in {(second['t'] - first['t']) / 1000:.1f} s, nc0 {first['util']} % -> {second['util']} %")
            assert not foreign, f"the page asked hosts other than 127.0.0.1: {foreign}"
            # The screenshot: CoreMap at the top of the notebook's view, TopView under it.
            _scroll_to_core_map(page, ".jp-Cell")
            page.screenshot(path=str(SCREENSHOT), timeout=budget.ms(10))

            # A second view: the saved notebook opened in another tab, on the same kernel.
            _save_notebook(page, lab, budget)
            lab.steps.append(f"saved after {budget.elapsed():.1f} s")
            last = _latest_completed(page)
            page, shot = _new_page(context, console, foreign, "second"), SECOND_VIEW_SCREENSHOT
            _open_notebook(page, lab, budget)
            assert [s["kernel"]["id"] for s in lab.api("sessions")] == [kernel_id]
            last = _check_current_state(page, budget, sync_api, kernel_id, last, "second view", lab.steps)["completed"]
            _scroll_to_core_map(page, ".jp-Cell")
            page.screenshot(path=str(SECOND_VIEW_SCREENSHOT), timeout=budget.ms(10))

            # A reload of the first tab.
            page, shot = context.pages[0], RELOAD_SCREENSHOT
            last = max(last, _latest_completed(context.pages[1]))
            page.reload(wait_until="domcontentloaded", timeout=budget.ms(30))
            _wait_kernel_idle(page, budget)
            _check_current_state(page, budget, sync_api, kernel_id, last, "reload", lab.steps)
            assert [s["kernel"]["id"] for s in lab.api("sessions")] == [kernel_id]
            assert not foreign, f"a page asked hosts other than 127.0.0.1: {foreign}"
            _scroll_to_core_map(page, ".jp-Cell")
            page.screenshot(path=str(RELOAD_SCREENSHOT), timeout=budget.ms(10))

            # The Dashboard in a side panel (a new cell: nrt_lab.show(sidecar=True)), live.
            shot = SIDECAR_SCREENSHOT
            _check_sidecar(page, budget, sync_api, lab.steps)
            page.screenshot(path=str(SIDECAR_SCREENSHOT), timeout=budget.ms(10))
            # Every text of the widgets (notebook and side panel) readable in Light, then in JupyterLab Dark.
            _check_contrast(page, budget, "JupyterLab Light", lab.steps)
            shot = DARK_SCREENSHOT
            _change_theme(page, budget, "JupyterLab Dark")
            _check_contrast(page, budget, "JupyterLab Dark", lab.steps)
            # The heatmaps' idle colour is the theme's neutral cell colour (as the grid's): no white block in Dark.
            lows = page.evaluate("() => [...document.querySelectorAll('.nrtw-chart-heat')]"
                                 ".map((d) => d.data[0].colorscale[0][1])")
            assert len(lows) == 2 and set(lows) == {"#424242"}, lows  # --jp-layout-color2 of JupyterLab Dark
            _scroll_to_core_map(page, ".jp-Cell")
            page.screenshot(path=str(DARK_SCREENSHOT), timeout=budget.ms(10))
            lab.steps.append(f"sidecar and themes checked after {budget.elapsed():.1f} s")
            assert not foreign, f"a page asked hosts other than 127.0.0.1: {foreign}"
            failed = False
        finally:
            _save_artifacts(page, shot, lab, console, failed)
            browser.close()
            print("\n".join(lab.steps))  # shown by pytest with the failure, or with -s


@pytest.mark.timeout(VOILA_BUDGET_S + 15)
def test_widgets_render_and_update_in_voila(tmp_path: Path) -> None:
    sync_api = _require_browser()
    budget = Budget(VOILA_BUDGET_S)
    VOILA_SCREENSHOT.unlink(missing_ok=True)
    console: list[str] = []
    foreign: list[str] = []
    kernels: list[str] = []
    with running_voila(tmp_path, budget) as voila, sync_api.sync_playwright() as pw:
        page: Page | None = None
        failed = True
        browser = _launch(pw, budget)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.route(_FOREIGN, lambda route: route.abort())  # offline: never wait on a CDN
            page = _new_page(context, console, foreign, "voila")
            page.on("websocket", lambda ws: kernels.extend(re.findall(r"/api/kernels/([0-9a-f-]{36})", ws.url)))
            # Voila answers once it has run the notebook in a new kernel; the widgets then render from it.
            page.goto(voila.base + "/", wait_until="domcontentloaded", timeout=budget.ms(40))
            voila.steps.append(f"page loaded after {budget.elapsed():.1f} s")
            page.wait_for_function("() => document.querySelectorAll('.nrtw').length === 2",
                                   timeout=budget.ms(30))
            voila.steps.append(f"widgets rendered after {budget.elapsed():.1f} s")
            assert not page.locator(".jp-OutputArea-output", has_text="Traceback").count(), \
                page.locator(".jp-OutputArea-output", has_text="Traceback").all_inner_texts()
            assert len(set(kernels)) == 1, f"the page's kernel websockets: {kernels}"
            _check_core_map(page, budget, sync_api, kernels[0])
            first, second = _check_top_view(page, budget, sync_api)
            voila.steps.append(
                f"TopView after {budget.elapsed():.1f} s: completed {first['completed']} -> {second['completed']}"
                f" in {(second['t'] - first['t']) / 1000:.1f} s, nc0 {first['util']} % -> {second['util']} %")
            unexpected = [url for url in foreign if not url.startswith(VOILA_TEMPLATE_HOSTS)]
            assert not unexpected, f"the page asked hosts other than 127.0.0.1: {unexpected}"
            _scroll_to_core_map(page, ".jp-OutputArea-output, .jp-Cell")
            failed = False
        finally:
            _save_artifacts(page, VOILA_SCREENSHOT, voila, console, failed, prefix="voila-")
            browser.close()
            print("\n".join(voila.steps))  # shown by pytest with the failure, or with -s
