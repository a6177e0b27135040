"""Native logs -> Python `logging`, and the official module functions for the native log.

The shim sends every log record as a SORA_EVENT_LOG event to one process-wide queue. One
daemon thread, started on first use, reads it and emits each record on the logger
`sora_ffi` at the mapped level (native threads never wait on Python to log).
"""
from __future__ import annotations

import atexit
import logging
import threading
from typing import Optional

from ._enums import SoraLoggingSeverity
from ._native import EventQueue, check, ffi, lib

__all__ = ["logger", "enable_libwebrtc_log", "rtc_log", "start_log_pump"]

logger = logging.getLogger("sora_ffi")

SORA_EVENT_LOG = 12
_LEVELS = {
    SoraLoggingSeverity.VERBOSE: logging.DEBUG,
    SoraLoggingSeverity.INFO: logging.INFO,
    SoraLoggingSeverity.WARNING: logging.WARNING,
    SoraLoggingSeverity.ERROR: logging.ERROR,
}

_lock = threading.Lock()
_queue: Optional[EventQueue] = None
_thread: Optional[threading.Thread] = None


def _severity(value: object, name: str) -> SoraLoggingSeverity:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a SoraLoggingSeverity, not {type(value).__name__}")
    try:
        return SoraLoggingSeverity(value)
    except ValueError:
        raise ValueError(f"{name} must be a SoraLoggingSeverity (0..4), not {value!r}") from None


def _pump(queue: EventQueue) -> None:
    while True:
        try:
            ev = queue.wait(-1)
        except EOFError:
            return
        except Exception:  # pragma: no cover - the shim failing to hand out an event
            logger.exception("sora_ffi: reading the native log queue failed")
            return
        if ev is None or ev.type != SORA_EVENT_LOG:
            continue
        level = _LEVELS.get(ev.a, logging.DEBUG)  # type: ignore[call-overload]
        try:
            logger.log(level, "%s", ev.text or "", extra={"native_target": ev.text2 or ""})
        except Exception:  # pragma: no cover - a broken handler must not stop the pump
            pass


def start_log_pump() -> None:
    """Attaches the process-wide native log queue and starts its reader (once)."""
    global _queue, _thread
    with _lock:
        if _thread is not None:
            return
        queue = EventQueue()
        check(lib.sora_log_set_queue(queue.ptr))
        thread = threading.Thread(target=_pump, args=(queue,), name="sora_ffi-log", daemon=True)
        thread.start()
        _queue, _thread = queue, thread


def _stop_log_pump() -> None:
    # At interpreter exit: detach, let the reader drain what is queued, then free the queue.
    global _queue, _thread
    with _lock:
        queue, thread = _queue, _thread
        _queue = _thread = None
    if queue is None:
        return
    try:
        lib.sora_log_set_queue(ffi.NULL)
        queue.close()
        if thread is not None:
            thread.join(timeout=1.0)
        queue.destroy()  # deferred by EventQueue if the reader is still inside a wait
    except Exception:  # pragma: no cover - never noisy at exit
        pass


atexit.register(_stop_log_pump)


def enable_libwebrtc_log(severity: SoraLoggingSeverity, /) -> None:
    """Sets the native log level; records at or above it reach the `sora_ffi` logger.

    (sora_ffi has no libwebrtc: this sets the level of the shim and libdatachannel.)"""
    sev = _severity(severity, "severity")
    start_log_pump()
    check(lib.sora_log_set_level(int(sev)))


def rtc_log(severity: SoraLoggingSeverity, message: str, /) -> None:
    """Writes `message` into the native log (it comes back on the `sora_ffi` logger when the
    native level lets it through)."""
    sev = _severity(severity, "severity")
    if not isinstance(message, str):
        raise TypeError(f"message must be a str, not {type(message).__name__}")
    if sev == SoraLoggingSeverity.NONE:
        return  # NONE is a level for filtering, not for a record
    start_log_pump()
    check(lib.sora_log_write(int(sev), message.encode("utf-8", "replace").replace(b"\0", b" ")))

