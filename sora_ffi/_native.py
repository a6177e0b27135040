"""The one place that touches the shim: the cffi binding, status checks, strings, events.

`ffi` comes from `_shim_cffi`, which `build_ffi.py` generates from `cshim/include/sora_shim.h`
(out-of-line ABI mode: nothing is compiled for Python). `lib` is `ffi.dlopen` of the shim
shipped in this package, or of the file named by the `SORA_SHIM_LIB` environment variable.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from typing import Any, Callable, Optional

try:
    from ._shim_cffi import ffi
except ImportError as e:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(
        "sora_ffi._shim_cffi is missing: build the package (`pip install .`) "
        "or run `python build_ffi.py` after building cshim/"
    ) from e

__all__ = ["ffi", "lib", "ShimError", "check", "take_string", "Event", "EventQueue", "Buffer",
           "library_path"]


def _library_name() -> str:
    if sys.platform == "darwin":
        return "libsora_shim.dylib"
    if sys.platform == "win32":
        return "sora_shim.dll"
    return "libsora_shim.so"


def library_path() -> str:
    """The shim this process loads: $SORA_SHIM_LIB, else the copy inside the package."""
    override = os.environ.get("SORA_SHIM_LIB")
    if override:
        return override
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _library_name())


def _open_library() -> Any:
    path = library_path()
    if not os.path.exists(path):
        raise ImportError(f"the sora shim library was not found at {path!r} (set SORA_SHIM_LIB or reinstall sora_ffi)")
    # RTLD_NODELETE: libdatachannel's SCTP timer threads outlive every peer; if interpreter
    # teardown frees the cffi library object, a dlclose would unmap code those threads are
    # about to run and the process would crash at exit.
    return ffi.dlopen(path, ffi.RTLD_NOW | getattr(ffi, "RTLD_NODELETE", 0))


lib = _open_library()

# Status names for messages; the values are part of the C ABI (docs/c-abi.md).
_STATUS_NAMES = {
    -1: "SORA_ERR_INVALID_ARGUMENT",
    -2: "SORA_ERR_INVALID_STATE",
    -3: "SORA_ERR_NOT_FOUND",
    -4: "SORA_ERR_CLOSED",
    -5: "SORA_ERR_TOO_LARGE",
    -6: "SORA_ERR_INTERNAL",
    -7: "SORA_ERR_TIMEOUT",
}


class ShimError(RuntimeError):
    """A negative status from the shim; `status` is the SORA_ERR_* value."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status = status
        self.status_name = _STATUS_NAMES.get(status, f"status {status}")
        super().__init__(message or self.status_name)


def last_error() -> str:
    """This thread's last error message from the shim ("" if none)."""
    p = lib.sora_last_error()
    return "" if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")


def check(status: int) -> int:
    """Raises ShimError for a negative status; returns the status otherwise."""
    if status < 0:
        # Read the message at once: it is thread-local and the next failing call replaces it.
        raise ShimError(status, last_error())
    return status


def take_string(ptr: Any) -> str:
    """Decodes a string the shim handed over (char* out parameter) and frees it."""
    if ptr == ffi.NULL:
        return ""
    try:
        return ffi.string(ptr).decode("utf-8", "replace")
    finally:
        lib.sora_string_free(ptr)


def _opt_text(p: Any) -> Optional[str]:
    return None if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")


class Buffer:
    """Bytes the shim handed over (a `SoraBuffer`), owned by Python and viewed in place.

    `ptr` is an `ffi.gc` pointer to the bytes whose destructor frees them. Everything that
    views the memory must go through `memory()` (`ffi.buffer(ptr, size)` keeps `ptr`, so a
    numpy array made with `np.frombuffer(buf.memory(), ...)` keeps the bytes alive by its
    `.base`): the bytes are freed when the last view is gone, never copied.
    """

    __slots__ = ("ptr", "size")

    def __init__(self, data: Any, size: int, release: Callable[[], None]) -> None:
        """`data`: the address of `size` bytes (a cdata pointer or an int); `release()` is
        called once, when nothing views them any more."""
        if isinstance(data, int):
            data = ffi.cast("uint8_t *", data)
        self.size = int(size)
        # The lambda must not hold `self`: the pointer outlives this object when viewed.
        self.ptr: Any = ffi.gc(ffi.cast("uint8_t *", data), lambda _p: release(), size=self.size)

    @classmethod
    def adopt(cls, handle: Any) -> "Buffer":
        """Takes ownership of a `SoraBuffer *` (freed with sora_buffer_free, also on failure)."""
        try:
            data = ffi.new("const uint8_t **")
            size = ffi.new("size_t *")
            check(lib.sora_buffer_view(handle, data, size))
        except BaseException:
            lib.sora_buffer_free(handle)
            raise
        return cls(data[0], int(size[0]), functools.partial(lib.sora_buffer_free, handle))

    @classmethod
    def take(cls, ev: Any) -> Optional["Buffer"]:
        """Moves the data out of a `SoraEvent *` (None when it carries none)."""
        out = ffi.new("SoraBuffer **")
        status = lib.sora_event_take_buffer(ev, out)
        if status == -3:  # SORA_ERR_NOT_FOUND: no data
            return None
        check(status)
        return cls.adopt(out[0])

    @property
    def address(self) -> int:
        """The address of the first byte (for tests and diagnostics)."""
        return int(ffi.cast("uintptr_t", self.ptr))

    def memory(self) -> Any:
        """A writable buffer-protocol view of the bytes that keeps them alive."""
        return ffi.buffer(self.ptr, self.size)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<Buffer {self.size} bytes at {self.address:#x}>"


# Events whose data is a media frame: it is moved out (sora_event_take_buffer) instead of
# copied, and reaches Python as `Event.buffer`.
MEDIA_EVENT_TYPES = frozenset((lib.SORA_EVENT_VIDEO_FRAME, lib.SORA_EVENT_AUDIO_FRAME,
                               lib.SORA_EVENT_AUDIO_DATA, lib.SORA_EVENT_TRANSFORM_FRAME))


class Event:
    """A plain Python copy of one SoraEventView (the native event is already freed).

    Media events (`MEDIA_EVENT_TYPES`) carry their data as `buffer` (moved, not copied) and
    have `data` None; other events carry a copy in `data`."""

    __slots__ = ("type", "source", "a", "b", "text", "text2", "data", "buffer")

    def __init__(self, type: int, source: int, a: int = 0, b: int = 0, text: Optional[str] = None,
                 text2: Optional[str] = None, data: Optional[bytes] = None,
                 buffer: Optional[Buffer] = None) -> None:
        self.type = type
        self.source = source
        self.a = a
        self.b = b
        self.text = text
        self.text2 = text2
        self.data = data
        self.buffer = buffer

    @classmethod
    def _from_view(cls, v: Any) -> "Event":
        data = None if v.data == ffi.NULL else ffi.buffer(v.data, v.data_len)[:]
        return cls(v.type, v.source, v.a, v.b, _opt_text(v.text), _opt_text(v.text2), data)

    @classmethod
    def _take(cls, ev: Any) -> "Event":
        """Reads a `SoraEvent *` (the caller frees it afterwards)."""
        view = ffi.new("SoraEventView *")
        view.size = _VIEW_SIZE
        check(lib.sora_event_view(ev, view))
        if view.type not in MEDIA_EVENT_TYPES or view.data == ffi.NULL:
            return cls._from_view(view)
        # Read everything but the data first: taking the buffer invalidates view.data.
        event = cls(view.type, view.source, view.a, view.b, _opt_text(view.text), _opt_text(view.text2))
        try:
            event.buffer = Buffer.take(ev)
        except ShimError:  # pragma: no cover - the shim failing to hand over; the frame is lost
            pass
        return event

    def __repr__(self) -> str:
        data = None if self.data is None else f"<{len(self.data)} bytes>"
        if self.buffer is not None:
            data = f"<buffer {self.buffer.size} bytes>"
        return (f"Event(type={self.type}, source={self.source}, a={self.a}, b={self.b}, "
                f"text={self.text!r}, text2={self.text2!r}, data={data})")


_VIEW_SIZE = ffi.sizeof("SoraEventView")


class EventQueue:
    """A native event queue. Waits release the GIL; any thread may wait, close or destroy.

    The native destroy must not race with a wait on the same handle, so `destroy()` called
    while waits are in progress is carried out by the last waiter on its way out.
    """

    def __init__(self, capacity: int = 0) -> None:
        out = ffi.new("SoraEventQueue **")
        check(lib.sora_event_queue_new(capacity, out))
        self.ptr: Any = out[0]
        self._lock = threading.Lock()
        self._waiters = 0
        self._destroy_pending = False
        # Safety net for a queue that is dropped without destroy(). Not at interpreter exit:
        # a daemon thread may still sit in a wait then, and the process frees everything anyway.
        self._finalizer = weakref.finalize(self, lib.sora_event_queue_destroy, self.ptr)
        self._finalizer.atexit = False

    def wait(self, timeout_ms: int) -> Optional[Event]:
        """The next event; None on timeout (timeout_ms < 0 waits forever).

        Raises EOFError once the queue is closed and drained (or destroyed)."""
        with self._lock:
            if self._destroy_pending or self.ptr == ffi.NULL:
                raise EOFError("event queue is closed")
            self._waiters += 1
        try:
            out = ffi.new("SoraEvent **")
            rc = lib.sora_event_queue_wait(self.ptr, timeout_ms, out)
            if rc == 0:
                return None
            if rc == -4:  # SORA_ERR_CLOSED: closed and drained
                raise EOFError("event queue is closed")
            check(rc)
            ev = out[0]
            try:
                return Event._take(ev)
            finally:
                lib.sora_event_free(ev)
        finally:
            with self._lock:
                self._waiters -= 1
                destroy_now = self._destroy_pending and self._waiters == 0
            if destroy_now:
                self._finalizer()

    def notify_fd(self) -> int:
        """A descriptor that becomes readable when events wait (Unix): for event loops,
        which read its bytes away, then take events with `wait(0)` until None."""
        out = ffi.new("int32_t *")
        with self._lock:
            if self._destroy_pending or self.ptr == ffi.NULL:
                raise EOFError("event queue is closed")
            check(lib.sora_event_queue_notify_fd(self.ptr, out))
        return int(out[0])

    def close(self) -> None:
        """Wakes all waiters; queued events are still handed out, then waits raise EOFError."""
        with self._lock:
            if self.ptr != ffi.NULL and self._finalizer.alive:
                lib.sora_event_queue_close(self.ptr)

    def destroy(self) -> None:
        """Closes and frees the native queue (deferred while a wait is in progress)."""
        with self._lock:
            if self._finalizer.alive:
                lib.sora_event_queue_close(self.ptr)
            self._destroy_pending = True
            destroy_now = self._waiters == 0
        if destroy_now:
            self._finalizer()

    @property
    def dropped(self) -> int:
        """Droppable events (media frames) discarded so far because the consumer was slow."""
        with self._lock:
            if not self._finalizer.alive:
                return 0
            return int(lib.sora_event_queue_dropped(self.ptr))

    def __repr__(self) -> str:
        return f"<EventQueue {self.ptr!r} waiters={self._waiters}>"
