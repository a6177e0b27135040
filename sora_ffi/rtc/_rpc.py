"""Participant-to-participant RPC on the room's `#_rtc.rpc` label (reliable, ordered), with
LiveKit's error codes. Every message is a JSON object addressed to one identity ("to");
the others ignore it (Sora delivers it to every member: calls are not private).

  {"t": "req", "id", "to", "method", "payload", "timeout_ms"}
  {"t": "ack", "id", "to"}                  the callee has the request (else CONNECTION_TIMEOUT)
  {"t": "res", "id", "to", "payload"} | {"t": "res", "id", "to", "error": {code, message, data}}
"""
from __future__ import annotations

import asyncio
import enum
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Union

from ._data import RPC_TOPIC, json_object
from ._emitter import logger

if TYPE_CHECKING:
    from ._room import Room

#: a request or response payload may hold at most this many bytes (UTF-8), as in LiveKit
MAX_PAYLOAD_BYTES = 15360
#: the callee acknowledges within this, or the call fails with CONNECTION_TIMEOUT
ACK_TIMEOUT = 2.0


class RpcErrorCode(enum.IntEnum):
    APPLICATION_ERROR = 1500
    CONNECTION_TIMEOUT = 1501
    RESPONSE_TIMEOUT = 1502
    RECIPIENT_DISCONNECTED = 1503
    RESPONSE_PAYLOAD_TOO_LARGE = 1504
    SEND_FAILED = 1505
    UNSUPPORTED_METHOD = 1400
    RECIPIENT_NOT_FOUND = 1401
    REQUEST_PAYLOAD_TOO_LARGE = 1402


class RpcError(Exception):
    """A failed call; handlers raise it to send their own code and message back."""

    ErrorCode = RpcErrorCode

    def __init__(self, code: int, message: str, data: Optional[str] = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = int(code)
        self.message = message
        self.data = data

    @classmethod
    def built_in(cls, code: RpcErrorCode, data: Optional[str] = None) -> "RpcError":
        return cls(code, code.name.replace("_", " ").lower(), data)


@dataclass(frozen=True)
class RpcInvocationData:
    request_id: str
    caller_identity: str
    payload: str
    response_timeout: float


RpcHandler = Callable[[RpcInvocationData], Union[str, Awaitable[str]]]


@dataclass
class _Call:
    to: str
    acked: "asyncio.Future[None]"
    result: "asyncio.Future[str]"


@dataclass
class Rpc:
    room: "Room"
    methods: dict[str, RpcHandler] = field(default_factory=dict)
    calls: dict[str, _Call] = field(default_factory=dict)
    tasks: set = field(default_factory=set)

    def register(self, method: str, handler: Optional[RpcHandler] = None) -> Any:
        if not isinstance(method, str) or not method:
            raise TypeError("method must be a non-empty str")
        if handler is None:
            return lambda fn: self.register(method, fn)
        if not callable(handler):
            raise TypeError("handler must be callable")
        self.methods[method] = handler
        return handler

    def unregister(self, method: str) -> None:
        self.methods.pop(method, None)

    async def perform(self, destination_identity: str, method: str, payload: str,
                      response_timeout: float) -> str:
        if not isinstance(destination_identity, str) or not isinstance(method, str) or not isinstance(payload, str):
            raise TypeError("destination_identity, method and payload must be str")
        if not isinstance(response_timeout, (int, float)) or response_timeout <= 0:
            raise ValueError("response_timeout must be a positive number of seconds")
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise RpcError.built_in(RpcErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        if destination_identity not in self.room.remote_participants:
            raise RpcError.built_in(RpcErrorCode.RECIPIENT_NOT_FOUND)
        loop = asyncio.get_running_loop()
        rid = str(uuid.uuid4())
        call = _Call(destination_identity, loop.create_future(), loop.create_future())
        self.calls[rid] = call
        try:
            try:
                await self._send({"t": "req", "id": rid, "to": destination_identity, "method": method,
                                  "payload": payload, "timeout_ms": int(response_timeout * 1000)})
            except (ConnectionError, PermissionError, asyncio.TimeoutError) as e:
                raise RpcError.built_in(RpcErrorCode.SEND_FAILED, str(e)) from None
            try:
                await asyncio.wait_for(asyncio.shield(call.acked), ACK_TIMEOUT)
            except asyncio.TimeoutError:
                raise RpcError.built_in(RpcErrorCode.CONNECTION_TIMEOUT) from None
            try:
                return await asyncio.wait_for(asyncio.shield(call.result), response_timeout)
            except asyncio.TimeoutError:
                raise RpcError.built_in(RpcErrorCode.RESPONSE_TIMEOUT) from None
        finally:
            self.calls.pop(rid, None)

    async def _send(self, message: dict) -> None:
        await self.room._send_reserved(RPC_TOPIC, json.dumps(message).encode())

    # -- receiving
    def on_message(self, sender: str, payload: bytes) -> None:
        msg = json_object(payload)
        if msg is None or not isinstance(msg.get("id"), str):
            logger.warning("sora_ffi.rtc: a malformed RPC message from %s was dropped", sender)
            return
        if msg.get("to") != self.room.local_participant.identity:
            return
        kind, rid = msg.get("t"), msg["id"]
        call = self.calls.get(rid)
        if kind == "req":
            self._serve(sender, rid, msg)
        elif kind == "ack" and call is not None and call.to == sender and not call.acked.done():
            call.acked.set_result(None)
        elif kind == "res" and call is not None and call.to == sender and not call.result.done():
            if not call.acked.done():
                call.acked.set_result(None)
            error = msg.get("error")
            if isinstance(error, dict):
                code = error.get("code")
                if isinstance(code, bool) or not isinstance(code, int):
                    code = int(RpcErrorCode.APPLICATION_ERROR)  # a malformed answer is still one
                data = error.get("data")
                call.result.set_exception(RpcError(code, str(error.get("message", "")),
                                                   data if isinstance(data, str) or data is None else str(data)))
            else:
                call.result.set_result(str(msg.get("payload", "")))

    def _serve(self, caller: str, rid: str, msg: dict) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(caller, rid, msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, caller: str, rid: str, msg: dict) -> None:
        reply: dict[str, Any] = {"t": "res", "id": rid, "to": caller}
        try:
            await self._send({"t": "ack", "id": rid, "to": caller})
        except (ConnectionError, PermissionError, asyncio.TimeoutError) as e:
            logger.info("sora_ffi.rtc: RPC %s from %s cannot be answered: %s", rid, caller, e)
            return
        try:
            handler = self.methods.get(str(msg.get("method")))
            if handler is None:
                raise RpcError.built_in(RpcErrorCode.UNSUPPORTED_METHOD)
            data = RpcInvocationData(rid, caller, str(msg.get("payload", "")),
                                     float(msg.get("timeout_ms", 10000)) / 1000)
            result = handler(data)
            if asyncio.iscoroutine(result):
                result = await result
            if not isinstance(result, str):
                result = "" if result is None else str(result)
            if len(result.encode()) > MAX_PAYLOAD_BYTES:
                raise RpcError.built_in(RpcErrorCode.RESPONSE_PAYLOAD_TOO_LARGE)
            reply["payload"] = result
        except RpcError as e:
            reply["error"] = {"code": e.code, "message": e.message, "data": e.data}
        except Exception as e:  # the handler's own failure
            logger.exception("sora_ffi.rtc: RPC handler for %r raised", msg.get("method"))
            reply["error"] = {"code": int(RpcErrorCode.APPLICATION_ERROR), "message": "application error",
                              "data": f"{type(e).__name__}: {e}"}
        try:
            await self._send(reply)
        except (ConnectionError, PermissionError, asyncio.TimeoutError):
            logger.info("sora_ffi.rtc: the answer to RPC %s could not be sent", rid)

    def participant_left(self, identity: str) -> None:
        for call in self.calls.values():
            if call.to == identity and not call.result.done():
                if not call.acked.done():
                    call.acked.set_result(None)
                call.result.set_exception(RpcError.built_in(RpcErrorCode.RECIPIENT_DISCONNECTED))

    def close(self) -> None:
        """The room is gone: every pending call fails (RECIPIENT_DISCONNECTED)."""
        for identity in {c.to for c in self.calls.values()}:
            self.participant_left(identity)
