"""Hot swap: the current version of a node's model, and the watcher that brings in a new one.

A `ModelSlot` holds the model version in use. Worker threads ask it for their runner at the start
of each batch (`runner()`), so a swap happens between batches: a batch runs wholly on one version,
and no event is lost or run twice.

`poll()` (called by a daemon thread every `interval` seconds; no inotify) looks at the model file's
mtime, size and inode and at its sidecar digest file. When they change, the new file is read and
verified (the sha256 pin, else the sidecar), loaded, checked to have the same signature as the
version in use, and warmed up with one invoke per worker thread's interpreter, all in the watcher's
thread; only then is it published. A version that fails any step is not used: the old one stays,
the failure is counted (`edgewax_model_swaps{result="failed"}`) and logged, and that file is not
tried again until it changes. Write a new model atomically (write a temporary file, then rename).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgewax.inference.model import (
    ModelError,
    ModelFile,
    file_identity,
    new_interpreter,
    read_model,
    sidecar_paths,
)
from edgewax.inference.runner import Runner

log = logging.getLogger("edgewax.inference")


@dataclass(frozen=True)
class Version:
    model: ModelFile
    generation: int


class ModelSlot:
    """A node's model: the version in use, per-thread runners, and the hot-swap check."""

    def __init__(
        self,
        model: ModelFile,
        pins: Sequence[str] = (),
        num_threads: int = 1,
        max_batch: int = 256,
        raw: bool = False,
        on_swap: Callable[[str, ModelFile | None, ModelFile | None, str], None] | None = None,
    ) -> None:
        self.path = model.path
        self.pins = list(pins)
        self.num_threads = num_threads
        self.max_batch = max_batch
        self.raw = raw
        self.current = Version(model, 0)
        self.on_swap = on_swap
        """Called as on_swap(result, old, new, detail) with result "ok", "failed" or "same" (the
        file changed back to the version in use)."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._threads = 0
        self._spares: dict[int, list[Any]] = {}
        self._seen = self._identity()
        self._watcher: threading.Thread | None = None

    def _identity(self) -> tuple[Any, ...]:
        return (file_identity(self.path), *(file_identity(p) for p in sidecar_paths(self.path)))

    def runner(self) -> tuple[Runner, ModelFile]:
        """This thread's runner for the version in use (made, or taken warm, on a change)."""
        loc = self._local
        cur = self.current
        runner: Runner | None = getattr(loc, "runner", None)
        if runner is None or loc.generation != cur.generation:
            if runner is None:
                with self._lock:
                    self._threads += 1
            interp = None
            with self._lock:
                spares = self._spares.get(cur.generation)
                if spares:
                    interp = spares.pop()
            runner = Runner(
                cur.model.content,
                cur.model.signature,
                self.num_threads,
                self.max_batch,
                self.raw,
                interpreter=interp,
            )
            loc.runner, loc.generation = runner, cur.generation
        return runner, cur.model

    def poll(self) -> str | None:
        """Check the file once; swap if it changed. Returns "ok", "failed" or None (no change)."""
        identity = self._identity()
        if identity == self._seen:
            return None
        self._seen = identity
        old = self.current.model
        try:
            new = read_model(self.path, self.pins)
        except ModelError as e:
            return self._failed(old, None, str(e))
        except OSError as e:
            return self._failed(old, None, f"cannot read {self.path}: {e}")
        if new.sha256 == old.sha256:  # touched, or put back after a failed swap
            if self.on_swap:
                self.on_swap("same", old, new, "")
            return None
        if not new.signature.same_as(old.signature):
            detail = "its signature differs: " + old.signature.difference(new.signature)
            return self._failed(old, new, detail)
        try:
            with self._lock:
                n = max(self._threads, 1)
            spares = []
            for _ in range(n):
                interp = new_interpreter(new.content, self.num_threads)
                Runner(
                    new.content, new.signature, self.num_threads, raw=True, interpreter=interp
                ).warm_up()
                spares.append(interp)
        except Exception as e:  # a model that loads but fails to run: keep the old one
            return self._failed(old, new, f"warm-up failed: {type(e).__name__}: {e}")
        generation = self.current.generation + 1
        with self._lock:
            self._spares = {generation: spares}
        self.current = Version(new, generation)
        log.info("model %s: swapped version %s for %s", self.path.name, old.version, new.version)
        if self.on_swap:
            self.on_swap("ok", old, new, "")
        return "ok"

    def _failed(self, old: ModelFile, new: ModelFile | None, detail: str) -> str:
        log.warning(
            "model %s: not swapping, keeping version %s: %s", self.path.name, old.version, detail
        )
        if self.on_swap:
            self.on_swap("failed", old, new, detail)
        return "failed"

    def watch(self, interval: float, stop: threading.Event) -> None:
        """Start the polling thread (once); it ends with `stop` or when the slot is gone."""
        with self._lock:
            if self._watcher is not None:
                return
            ref = weakref.ref(self)
            thread = threading.Thread(
                target=_watch, args=(ref, interval, stop), name="edgewax-model-watch", daemon=True
            )
            self._watcher = thread
        thread.start()


def _watch(ref: weakref.ref[ModelSlot], interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        slot = ref()
        if slot is None:
            return
        try:
            slot.poll()
        except Exception:  # never let the watcher die: the old model keeps serving
            log.exception("model watcher for %s failed; will retry", slot.path)
        del slot
