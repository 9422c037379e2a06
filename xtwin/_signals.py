"""Interrupts that cannot be lost: SIGINT sets a flag as well as raising KeyboardInterrupt.

Python raises KeyboardInterrupt wherever the main thread happens to be; inside a weakref or
garbage-collection callback it is printed and ignored, and a long run would go on. Long loops
call :func:`check_interrupted` between units of work, so an interrupt that was swallowed
still stops the run at the next safe point.
"""

from __future__ import annotations

import threading

_INTERRUPTED = threading.Event()


#: Frames in which an exception would be printed ("Exception ignored in ...") and lost:
#: weakref and finalizer callbacks. The interrupt is then raised at the next safe point.
_SWALLOWING = ("weakref.py", "_weakrefset.py")


def on_sigint(signum, frame) -> None:
    """SIGINT handler: remember the interrupt, then raise it (not inside a weakref callback
    or a finalizer, which would print it with a traceback and drop it: there the next
    :func:`check_interrupted` raises it)."""
    _INTERRUPTED.set()
    if frame is not None and (
        frame.f_code.co_filename.endswith(_SWALLOWING) or frame.f_code.co_name == "__del__"
    ):
        return
    raise KeyboardInterrupt


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if SIGINT arrived (even if its exception was swallowed)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt
