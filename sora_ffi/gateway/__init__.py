"""A local audio streaming gateway (Suzu-compatible endpoints) with an offline recognizer:
``python -m sora_ffi.gateway``. See docs/audio-streaming.md."""
from .app import GatewayApp, GatewayOptions
from .framing import FramedReader, FramingError, Packet, UnframedReader
from .recognizers import (PocketSphinxRecognizer, Recognizer, RecognizerFactory,
                          UnsupportedLanguage, load_factory)
from .server import AsyncGateway, Gateway

__all__ = ["AsyncGateway", "FramedReader", "FramingError", "Gateway", "GatewayApp",
           "GatewayOptions", "Packet", "PocketSphinxRecognizer", "Recognizer",
           "RecognizerFactory", "UnframedReader", "UnsupportedLanguage", "load_factory"]
