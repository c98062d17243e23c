"""Wake-ups when watched directories change: watchdog (inotify), or nothing.

A Waker never reads files; it only says which watched directories changed so that
their tailers are read at once instead of at the next poll. When inotify is not
available (no watchdog observer, watch limit reached, HARNESS_NO_INOTIFY=1), a
watch() call returns False and the caller polls that directory instead.

The observer's emitters are watchdog's inotify ones with one change, in how they
stop (see _Emitter): stopping one never races with its thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver


class _Handler(FileSystemEventHandler):
    def __init__(self, waker: Waker, key: str, names: frozenset[str]) -> None:
        self.waker, self.key, self.names = waker, key, names

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self.names:
            src = os.fsdecode(event.src_path)
            dest = os.fsdecode(event.dest_path) if event.dest_path else ""
            if os.path.basename(src) not in self.names and os.path.basename(dest) not in self.names:
                return
        self.waker.poke(self.key)


class _Emitter(InotifyEmitter):
    """watchdog's InotifyEmitter, stopped without a race.

    Its stop() drops the watch group, then closes it. The emitter's thread loops
    on "still running? then queue_events()"; when stop() lands between the two (the
    thread has just started, or has just queued an event), queue_events() finds no
    group and logs "InotifyEmitter.queue_events() called when the thread is inactive"
    to stderr. Here stop() closes the group and keeps it: that read returns nothing
    at once, and the loop then sees the stop.
    """

    def on_thread_stop(self) -> None:
        group = self._inotify
        if group is not None:
            group.deactivate()


class _Observer(InotifyObserver):
    """watchdog's inotify observer, with _Emitter for each watch."""

    def __init__(self) -> None:
        super().__init__()
        self._emitter_class = _Emitter


class Waker:
    def __init__(self, use_inotify: bool = True) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._dirty: set[str] = set()
        self._watches: dict[str, ObservedWatch] = {}
        self._observer: BaseObserver | None = None
        self.error = ""
        if use_inotify and os.environ.get("HARNESS_NO_INOTIFY") != "1":
            try:
                observer = _Observer()
                observer.daemon = True
                observer.start()
                self._observer = observer
            except Exception as exc:
                self.error = f"inotify unavailable: {exc}"
        elif use_inotify:
            self.error = "inotify disabled by HARNESS_NO_INOTIFY=1"

    @property
    def mode(self) -> str:
        return "inotify" if self._observer is not None else "polling"

    def watch(self, key: str, directory: str, names: Iterable[str] = ()) -> bool:
        """Wakes on changes in directory (to files called names, if given). False: poll it."""
        if self._observer is None:
            return False
        if key in self._watches:
            return True
        try:
            self._watches[key] = self._observer.schedule(_Handler(self, key, frozenset(names)), directory)
        except Exception as exc:
            self.error = f"cannot watch {directory}: {exc}"
            return False
        return True

    def unwatch(self, key: str) -> None:
        watch = self._watches.pop(key, None)
        if watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)

    def poke(self, key: str) -> None:
        with self._lock:
            self._dirty.add(key)
        self._event.set()

    def wait(self, timeout_s: float) -> None:
        if timeout_s > 0:
            self._event.wait(timeout_s)
        self._event.clear()

    def take_dirty(self) -> set[str]:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        return dirty

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self._watches.clear()
