"""The public surface of the official package against sora_ffi's (issue 8 §1).

The reference is the installed official `sora_sdk` (2025.5.2 in CI): its type stub
`sora_sdk_ext.pyi` lists every module function, class, nested class, method, property and
enum member with its parameters, and its `__init__.py` adds the sink wrapper classes and
`__version__`. Every name must exist in sora_ffi with the same parameter names, order and
defaults, except the deliberate differences below (also in docs/api-differences.md).
"""
from __future__ import annotations

import ast
import enum
import importlib.util
import inspect
import os

import pytest

import sora_ffi

# name -> why. A parameter list difference is keyed "Class.method(params)".
DIFFERENCES = {
    "Sora.__init__(params)": "adds field_trials (sora_sdk 2026.x) and the keyword-only "
                             "use_hardware_encoder of the 2023-2024 API",
    "Sora.create_connection(params)": "adds ping_timeout (a dead server or network noticed "
                                      "from the server's pings) and **removed, to answer the "
                                      "removed Lyra parameters with an explanation instead of "
                                      "a bare TypeError",
    "SoraVideoCodecPreference.Codec.__init__(params)": "one signature with defaults instead "
                                                       "of two overloads; Codec() is VP8 "
                                                       "(the official type 0 is unreadable)",
    "SoraVideoCodecPreference.__init__(params)": "codecs defaults to () instead of a mutable []",
}


def official_stub() -> ast.Module:
    spec = importlib.util.find_spec("sora_sdk")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the official sora_sdk is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "sora_sdk_ext.pyi")
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read())


def params(fn: ast.FunctionDef) -> list:
    """(name, default source) of a stub function, self included."""
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    out = [(p.arg, None if d is None else ast.unparse(d)) for p, d in zip(positional, defaults)]
    out += [(p.arg, None if d is None else ast.unparse(d))
            for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    return out


def our_params(obj) -> list:
    sig = inspect.signature(obj)
    out = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out.append((p.name, None if p.default is p.empty else _source(p.default)))
    return out


def _source(value) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, tuple) and not value:
        return "()"
    return repr(value)


def is_overload(fn: ast.FunctionDef) -> bool:
    return any(ast.unparse(d) in ("overload", "typing.overload") for d in fn.decorator_list)


def walk_class(node: ast.ClassDef, ours, qual: str, problems: list) -> None:
    is_enum = any(ast.unparse(b).endswith("Enum") for b in node.bases)
    for item in node.body:
        if isinstance(item, ast.ClassDef):
            nested = getattr(ours, item.name, None)
            if nested is None:
                problems.append(f"missing class {qual}.{item.name}")
            else:
                walk_class(item, nested, f"{qual}.{item.name}", problems)
        elif isinstance(item, ast.Assign) and is_enum:
            name = item.targets[0].id
            value = ast.literal_eval(item.value)
            member = getattr(ours, name, None)
            if member is None or int(member) != value:
                problems.append(f"enum {qual}.{name} = {value}: ours {member!r}")
        elif isinstance(item, ast.FunctionDef):
            attr = getattr(ours, item.name, None)
            if attr is None and item.name != "__del__":
                problems.append(f"missing {qual}.{item.name}")
                continue
            decorators = [ast.unparse(d) for d in item.decorator_list]
            if "property" in decorators or any(d.endswith(".setter") for d in decorators):
                static = inspect.getattr_static(ours, item.name)
                # a property, or another data descriptor (sora_ffi's callback slots)
                if not (hasattr(static, "__get__") and hasattr(static, "__set__")):
                    problems.append(f"{qual}.{item.name} is not a property")
                continue
            if is_overload(item) or item.name == "__del__":
                continue  # overloads: the name exists; their forms are tested per method
            key = f"{qual}.{item.name}(params)"
            if key in DIFFERENCES:
                continue
            theirs = params(item)
            mine = our_params(attr)
            if theirs[:1] == [("self", None)]:
                theirs = theirs[1:]
                if mine[:1] == [("self", None)]:
                    mine = mine[1:]
            # positional-only names ("arg", "arg0") are not part of the API: compare by count
            if [n for n, _ in theirs if not n.startswith("arg")] != \
                    [n for n, _ in mine][:len(theirs)] and \
                    any(not n.startswith("arg") for n, _ in theirs):
                problems.append(f"{key}: official {theirs}, sora_ffi {mine}")
            elif [d for _, d in theirs] != [d for _, d in mine]:
                problems.append(f"{key} defaults: official {theirs}, sora_ffi {mine}")


def test_every_official_name_exists_with_a_compatible_signature():
    tree = official_stub()
    problems: list = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            ours = getattr(sora_ffi, node.name, None)
            if ours is None:
                problems.append(f"missing class {node.name}")
                continue
            walk_class(node, ours, node.name, problems)
        elif isinstance(node, ast.FunctionDef):
            ours = getattr(sora_ffi, node.name, None)
            if ours is None:
                problems.append(f"missing function {node.name}")
            elif len(params(node)) != len(our_params(ours)) and \
                    f"{node.name}(params)" not in DIFFERENCES:
                problems.append(f"{node.name}: official {params(node)}, ours {our_params(ours)}")
    assert not problems, "\n".join(problems)


def test_the_package_level_names():
    import sora_sdk
    for name in ("SoraAudioSink", "SoraAudioStreamSink", "SoraVideoSink", "__version__"):
        assert hasattr(sora_sdk, name) and hasattr(sora_ffi, name), name
    assert isinstance(sora_ffi.__version__, str) and sora_ffi.__version__
    sig = inspect.signature(sora_ffi.SoraAudioSink)
    assert list(sig.parameters)[:3] == ["track", "output_frequency", "output_channels"]


def test_the_differences_are_documented():
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "api-differences.md"),
              encoding="utf-8") as f:
        text = f.read()
    for key in DIFFERENCES:
        assert key.split("(")[0] in text, key
