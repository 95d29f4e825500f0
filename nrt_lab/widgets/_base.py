"""The live-widget base class: full state in a synced trait, incremental deltas, one sampling thread.

Protocol between Python and the browser (every widget uses it):

* ``state`` (synced dict) holds the **whole** current state as a flat mapping ``key -> JSON value`` (``c17`` is
  NeuronCore 17, ``p1234`` a process, ...). Python updates it **in place**, which sends nothing; a page reload,
  a second view or Voila asks the kernel for the model's state and so gets the current value of every key.
* ``delta`` (synced dict) is re-assigned on every update with only what changed:
  ``{"seq": n, "set": {key: value, ...}, "del": [key, ...]}``. That is the only message an update sends.
  Values are absolute, so applying a delta twice is harmless; the browser ignores a delta whose ``seq`` is not
  newer than the state it holds.
* Keys listed in ``_derived_keys`` (TopView's history ring) are never sent in deltas: Python and the browser
  each recompute them from the stream of deltas, and the full state carries them for new views.

The sampling thread (:class:`~nrt_lab.widgets._sampler.Sampler`) only calls :meth:`LiveWidget._apply`, which
sets trait values under the widget's lock; serialising the state for the front end takes the same lock.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import anywidget
import traitlets

from nrt_lab.monitor import Clock
from nrt_lab.widgets._sampler import MAX_PERIOD, MIN_PERIOD, Observation, Sampler

__all__ = ["LiveWidget", "MessageLog", "record_messages", "SIZES", "WIDGET_VIEW_MIME"]

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
SIZES = ("normal", "presentation")


class LiveWidget(anywidget.AnyWidget):
    """Base of the nrt_lab widgets: synced full state + deltas, pause/resume, period, stop/close."""

    state = traitlets.Dict().tag(sync=True)
    delta = traitlets.Dict().tag(sync=True)
    paused = traitlets.Bool(False).tag(sync=True)
    period = traitlets.Float(1.0).tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    size = traitlets.Unicode("normal").tag(sync=True)  # "presentation": bigger cells and fonts (a projector)

    _default_period: ClassVar[float] = 1.0
    _wants_snapshot: ClassVar[bool] = False
    _derived_keys: ClassVar[tuple[str, ...]] = ()
    _layout_keys: ClassVar[tuple[str, ...]] = ("inst",)
    _heartbeat: ClassVar[bool] = False  # True: send a delta on every tick even when nothing changed

    def __init__(self, *, root: Path | str | None = None, period: float | None = None, autostart: bool = True,
                 sampler: Sampler | None = None, clock: Clock | None = None, **kwargs: Any) -> None:
        self._nrt_lock = threading.RLock()
        self._seq = 0
        self._last_tick: float | None = None
        self._update_count = 0
        self._closing = False
        self._owns_sampler = sampler is None
        self._sampler = sampler if sampler is not None else Sampler(root, name=type(self).__name__, clock=clock)
        self._prepare(kwargs)
        observation = self._sampler.observe(self._needs_snapshot())
        initial = self._initial_state(observation)
        super().__init__(state=initial, period=self._default_period if period is None else period, **kwargs)
        self._last_tick = self._sampler.clock.monotonic()
        self._update_count = 1
        self._sampler.attach(self)
        if autostart:
            self.start()

    # ------------------------------------------------------------------ subclass hooks
    def _prepare(self, kwargs: dict[str, Any]) -> None:
        """Take subclass-only constructor arguments out of ``kwargs`` before the traits are set up."""

    def _build(self, observation: Observation) -> dict[str, Any]:
        """The whole state (flat JSON mapping) for ``observation``; derived keys excluded."""
        raise NotImplementedError

    def _derive(self, state: dict[str, Any], reset: bool) -> None:
        """Update the derived keys of ``state`` in place after an update (``reset``: start them afresh)."""

    def _static_html(self, state: Mapping[str, Any]) -> str:
        """Plain HTML picture of ``state``."""
        raise NotImplementedError

    def _plain(self, state: Mapping[str, Any]) -> str:
        """Deterministic one-line text of ``state`` (no addresses, ids or timings)."""
        raise NotImplementedError

    def _needs_snapshot(self) -> bool:
        return self._wants_snapshot

    # ------------------------------------------------------------------ validation and observers
    @traitlets.validate("size")
    def _valid_size(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if value not in SIZES:
            raise traitlets.TraitError(f"size={value!r} is invalid; accepted: {', '.join(map(repr, SIZES))}")
        return value

    @traitlets.validate("period")
    def _valid_period(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if value != value:  # NaN
            return self._default_period
        return min(MAX_PERIOD, max(MIN_PERIOD, value))

    @traitlets.observe("paused", "period")
    def _schedule_changed(self, change: Any) -> None:
        sampler = getattr(self, "_sampler", None)
        if sampler is not None:
            sampler.wake()

    # ------------------------------------------------------------------ public control
    def start(self) -> None:
        """Start (or restart) live updates in the background thread."""
        if self._closing:
            return
        self._sampler.attach(self)
        if self._owns_sampler:
            self._sampler.start()
        self.running = self._sampler.alive

    def stop(self) -> None:
        """Stop live updates; a widget with its own thread waits for the thread to end."""
        self._sampler.detach(self)
        if self._owns_sampler:
            self._sampler.stop()
        self.running = False

    def pause(self) -> None:
        """Stop changing until :meth:`resume` (the thread keeps running, idle)."""
        self.paused = True

    def resume(self) -> None:
        """Continue live updates after :meth:`pause`."""
        self.paused = False

    def refresh(self) -> None:
        """Read the machine now and update (also while paused or stopped)."""
        observation = self._sampler.observe(self._needs_snapshot())
        self._apply(observation)

    def apply(self, observation: Observation) -> None:
        """Update from an observation read elsewhere (``sampler.observe(...)``), e.g. to time the two halves."""
        self._apply(observation)

    @property
    def sampler(self) -> Sampler:
        """The sampler (and thread) serving this widget; shared by the parts of a Dashboard."""
        return self._sampler

    def close(self) -> None:
        """Stop the thread and close the widget's comm (its views disappear)."""
        self._closing = True
        self.stop()
        super().close()

    @property
    def thread(self) -> threading.Thread | None:
        """The sampling thread serving this widget (None before the first start)."""
        return self._sampler.thread

    @property
    def update_count(self) -> int:
        """Updates published so far (the initial state counts as one)."""
        return self._update_count

    @property
    def seq(self) -> int:
        """Sequence number of the current state (grows by one per update)."""
        return self._seq

    def current_state(self) -> dict[str, Any]:
        """A deep copy of the full current state (what a new view would be given)."""
        with self._nrt_lock:
            return copy.deepcopy(dict(self.state))

    def state_bytes(self, derived: bool = True) -> int:
        """Size in bytes of the full state as compact JSON (``derived=False`` leaves out e.g. the history)."""
        with self._nrt_lock:
            state = self.state if derived else {k: v for k, v in self.state.items() if k not in self._derived_keys}
            return len(json.dumps(state, separators=(",", ":")))

    # ------------------------------------------------------------------ sampler protocol
    def _due(self, now: float) -> bool:
        if self.paused or self._closing:
            return False
        return self._last_tick is None or now >= self._last_tick + self.period

    def _scheduled(self, now: float) -> None:
        self._last_tick = max(now, self._last_tick or 0.0)

    def _next_due(self) -> float | None:
        if self.paused or self._closing:
            return None
        return (self._last_tick or 0.0) + self.period

    def _apply(self, observation: Observation | None, error: str = "") -> None:
        with self._nrt_lock:
            if self._closing and self.comm is None:
                return
            if observation is None:
                self.error = error or "the machine could not be read"
                return
            try:
                new = self._build(observation)
            except Exception as exc:  # noqa: BLE001 - shown in the widget, the thread goes on
                self.error = f"{type(exc).__name__}: {exc}"
                return
            if self.error:
                self.error = ""
            self._publish(new)
            # The next update is due one period after this one was sent: never more than 1/period per second.
            self._last_tick = self._sampler.clock.monotonic()

    def _initial_state(self, observation: Observation) -> dict[str, Any]:
        state = self._build(observation)
        state["seq"] = self._seq
        self._derive(state, reset=True)
        return state

    def _publish(self, new: dict[str, Any]) -> None:
        """Send only what changed (as ``delta``); the full ``state`` is updated in place."""
        state = self.state
        if any(state.get(k) != new.get(k) for k in self._layout_keys):
            self._seq += 1
            self._update_count += 1
            new["seq"] = self._seq
            self._derive(new, reset=True)
            self.state = new  # a different layout: one full update
            return
        skip = {"seq", *self._derived_keys}
        changed = {k: v for k, v in new.items() if k not in skip and (k not in state or state[k] != v)}
        removed = [k for k in state if k not in skip and k not in new]
        if not changed and not removed and not self._heartbeat:
            return  # nothing to send
        self._seq += 1
        self._update_count += 1
        state.update(changed)
        for key in removed:
            del state[key]
        state["seq"] = self._seq
        self._derive(state, reset=False)
        self.delta = {"seq": self._seq, "set": changed, "del": removed}

    # ------------------------------------------------------------------ thread-safe syncing
    def send_state(self, key: Any = None) -> None:
        """Send (part of) the state to the front end; holds the widget lock so a full state is consistent."""
        with self._nrt_lock:
            super().send_state(key)

    def get_state(self, key: Any = None, drop_defaults: bool = False) -> dict[str, Any]:
        """The synced traits as JSON-able values; ``state`` is copied under the lock, so it is consistent."""
        with self._nrt_lock:
            result: dict[str, Any] = super().get_state(key=key, drop_defaults=drop_defaults)
            if isinstance(result.get("state"), dict):
                full = dict(result["state"])
                for name in self._derived_keys:
                    if isinstance(full.get(name), list):
                        full[name] = list(full[name])
                result["state"] = full
            return result

    def set_state(self, sync_data: Any) -> None:
        """Apply changes coming from the front end (under the widget lock)."""
        with self._nrt_lock:
            super().set_state(sync_data)

    # ------------------------------------------------------------------ representations
    def _repr_html_(self) -> str:
        with self._nrt_lock:
            return self._static_html(self.state)

    def __repr__(self) -> str:
        with self._nrt_lock:
            return self._plain(self.state)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
        data: dict[str, Any] = {"text/plain": repr(self), "text/html": self._repr_html_()}
        if self.comm is not None and self._view_name is not None:
            data[WIDGET_VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": self.model_id}
        return data, {}


class MessageLog:
    """Every comm message a widget sends (``update`` with its state, custom messages), decoded, with its size.

    Hooks the widget's message path just before the comm (ipywidgets' ``Widget._send``), so it also records in a
    process with no front end connected; sizes are bytes of compact JSON; times come from the widget's clock.
    """

    def __init__(self, widget: Any) -> None:
        self.widget = widget
        clock: Clock = widget.sampler.clock
        self.messages: list[dict[str, Any]] = []
        self.sizes: list[int] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        original = widget._send

        def send(msg: Any, buffers: Any = None) -> Any:
            text = json.dumps(msg, separators=(",", ":"), default=str)
            with self._lock:
                self.messages.append(json.loads(text))
                self.sizes.append(len(text.encode()))
                self.times.append(clock.monotonic())
            return original(msg, buffers=buffers)

        widget._send = send

    def updates(self) -> list[tuple[float, int, dict[str, Any]]]:
        """(monotonic time, bytes, state) of every ``update`` message, in order."""
        with self._lock:
            return [(t, n, m.get("state", {})) for t, n, m in zip(self.times, self.sizes, self.messages, strict=True)
                    if isinstance(m, dict) and m.get("method") == "update"]

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self.messages.clear()
            self.sizes.clear()
            self.times.clear()

    def stop(self) -> None:
        """Stop recording (the widget sends as before)."""
        self.widget.__dict__.pop("_send", None)


def record_messages(widget: Any) -> MessageLog:
    """Record what ``widget`` sends to the front end from now on (sizes in bytes of compact JSON)."""
    return MessageLog(widget)
