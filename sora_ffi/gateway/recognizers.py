"""Speech recognizers: the gateway's plug-ins.

A recognizer gets one stream's audio as 16 kHz mono int16 PCM, in pieces as they come, and
answers with results in the shapes Suzu sends: ``{"type": <service>, "message": <text>,
"is_final": true}`` once an utterance is over, ``{"type": ..., "message": ...,
"is_partial": true}`` while it goes on. A cloud service plugs in the same way: a factory
``make(language_code) -> Recognizer`` (``--recognizer module:factory``) whose recognizer
forwards the PCM and returns what the service has sent back since the last call.

:class:`PocketSphinxRecognizer` ships (offline; the ``pocketsphinx`` wheel carries its US
English model): utterances are cut by its voice activity endpointer and decoded when they
end, with partial hypotheses while they go on.
"""
from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from typing import Callable, Optional

from .._lazy import np

SAMPLE_RATE = 16000


class UnsupportedLanguage(ValueError):
    """The recognizer has no model for the stream's language code."""


def final(kind: str, text: str) -> dict:
    return {"type": kind, "message": text, "is_final": True}


def partial(kind: str, text: str) -> dict:
    return {"type": kind, "message": text, "is_partial": True}


class Recognizer(ABC):
    """One stream's recognition (not shared between streams; called from one thread at a
    time, maybe not the same one)."""

    @abstractmethod
    def feed(self, pcm: "np.ndarray") -> list:
        """Takes more audio (16 kHz mono int16, any length); returns new results."""

    def finish(self) -> list:
        """The audio has ended: returns what is left (the last utterance's final)."""
        return []


RecognizerFactory = Callable[[str], Recognizer]


class PocketSphinxRecognizer(Recognizer):
    """CMU PocketSphinx with its bundled US English acoustic and language models."""

    KIND = "pocketsphinx"
    #: a partial result at most this often (s)
    PARTIAL_INTERVAL = 0.5

    def __init__(self, language_code: str) -> None:
        if not language_code.lower().replace("_", "-").startswith("en"):
            raise UnsupportedLanguage(
                f"pocketsphinx has an English model only, not {language_code!r}")
        from pocketsphinx import Decoder, Endpointer  # imported here: an optional dependency

        self._ep = Endpointer(sample_rate=SAMPLE_RATE)
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self._pending = b""
        self._in_utterance = False
        self._last_partial = ("", 0.0)

    def feed(self, pcm: "np.ndarray") -> list:
        data = self._pending + np.ascontiguousarray(pcm, dtype=np.int16).tobytes()
        size = self._ep.frame_bytes
        whole = len(data) // size * size
        self._pending = data[whole:]
        out: list = []
        for i in range(0, whole, size):
            out.extend(self._frame(data[i:i + size]))
        return out

    def _frame(self, frame: bytes) -> list:
        speech = self._ep.process(frame)
        if speech is None:
            return []
        if not self._in_utterance:
            self._decoder.start_utt()
            self._in_utterance = True
        self._decoder.process_raw(speech, False, False)
        if not self._ep.in_speech:
            return self._end_utterance()
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        now = time.monotonic()
        if text and text != self._last_partial[0] and now - self._last_partial[1] >= self.PARTIAL_INTERVAL:
            self._last_partial = (text, now)
            return [partial(self.KIND, text)]
        return []

    def _end_utterance(self) -> list:
        self._decoder.end_utt()
        self._in_utterance = False
        self._last_partial = ("", 0.0)
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        return [final(self.KIND, text)] if text else []

    def finish(self) -> list:
        out: list = []
        if self._pending:
            speech = self._ep.end_stream(self._pending)
            self._pending = b""
            if speech is not None and self._in_utterance:
                self._decoder.process_raw(speech, False, False)
        if self._in_utterance:
            out.extend(self._end_utterance())
        return out


def load_factory(spec: Optional[str]) -> RecognizerFactory:
    """``None``/``"pocketsphinx"``: the bundled recognizer; ``"module:callable"``: a
    plug-in's factory."""
    if spec in (None, "pocketsphinx"):
        return PocketSphinxRecognizer
    module, sep, name = str(spec).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"a recognizer is 'pocketsphinx' or 'module:factory', not {spec!r}")
    factory = getattr(importlib.import_module(module), name, None)
    if not callable(factory):
        raise ValueError(f"{spec!r} is not a callable")
    return factory
