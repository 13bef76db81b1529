"""Processes the engine starts die with the process that started them.

A composer process or a project check left running after `lifecycle send` or
`lifecycle run` is killed (SIGKILL: no chance to clean up) would live on,
reparented to init, holding the database and the CPU. `die_with_parent` is
called first thing in such a child: on Linux the kernel kills it when its
parent dies (`PR_SET_PDEATHSIG`); elsewhere a watcher thread notices the
parent gone within a second and ends the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_SECONDS = 0.5


def die_with_parent(parent_pid: int) -> None:
    """End this process when `parent_pid` (the process that started it) dies.

    If the parent is already gone, end it now.
    """
    if not _death_signal():
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="die-with-parent", daemon=True
        ).start()
    if os.getppid() != parent_pid:  # died before the death signal was armed
        os._exit(1)


def _death_signal() -> bool:
    """Ask Linux to SIGKILL this process when the thread that started it ends: the
    engine starts its children from the main thread, which ends only with the process."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_SECONDS)
    os._exit(1)
