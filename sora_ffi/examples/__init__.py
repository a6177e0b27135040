"""Runnable examples: ``python -m sora_ffi.examples.<name>``."""
