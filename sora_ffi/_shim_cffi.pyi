# Generated at build time by build_ffi.py (cffi out-of-line ABI module).
from typing import Any

ffi: Any
