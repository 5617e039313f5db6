"""Digests of a method's own implementation, part of the keys of its stages and results.

A method's digest hashes the source of the module that defines it and of every module of its own
package that it imports, directly or through those modules (``from .unimodal import ...``).
clipbench's shared contract modules (``clipbench.attacks.base``, ``clipbench.defenses.base``, ``clipbench.detectors.base``) are
stage code shared by every method, versioned by ``STAGE_VERSIONS`` instead. For a plugin the
digest reads its installed module, so editing a plugin recomputes its stages and nothing else.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from functools import cache
from pathlib import Path
from typing import Optional

#: Modules whose code is shared by all methods and versioned explicitly.
SHARED_MODULES = frozenset({"clipbench.attacks.base", "clipbench.defenses.base", "clipbench.detectors.base"})


def _source_path(module_name: str) -> Optional[Path]:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        spec = importlib.util.find_spec(module_name)
        path = spec.origin if spec is not None else None
    return Path(path) if path and str(path).endswith(".py") else None


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):  # a name inside a module, not a module
        return False


def _imported_modules(source: str, module_name: str, package: str) -> set[str]:
    """Names of the modules of ``package`` that ``source`` (module ``module_name``) imports."""
    found: set[str] = set()
    is_package = module_name == package
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_name if is_package else module_name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
                names = [target] + [f"{target}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if package and (name == package or name.startswith(package + ".")) and _is_module(name):
                found.add(name)
    return found


@cache
def module_closure(module_name: str) -> tuple[str, ...]:
    """``module_name`` and the modules of its package it imports, transitively, sorted."""
    package = module_name.rpartition(".")[0]
    seen: set[str] = set()
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in seen or name in SHARED_MODULES:
            continue
        path = _source_path(name)
        if path is None:
            continue
        seen.add(name)
        todo.extend(_imported_modules(path.read_text(), name, package) - seen)
    return tuple(sorted(seen))


_DIGESTS: dict[tuple, str] = {}


def method_digest(cls: type) -> str:
    """sha256 over the sources of ``cls``'s module closure (see the module docstring).

    Memoised per process by the files' (path, size, mtime), since every stage of every cell asks
    for it; an edited file has a new mtime, so an edit is still seen."""
    modules = (cls.__module__, *getattr(cls, "digest_modules", ()))  # a composition names its parts' modules
    paths = [(name, _source_path(name)) for name in sorted(set().union(*(module_closure(m) for m in modules)))]
    stamp = tuple((name, str(path), path.stat().st_size, path.stat().st_mtime_ns) if path else (name,) for name, path in paths)
    if stamp not in _DIGESTS:
        digest = hashlib.sha256()
        for name, path in paths:
            digest.update(name.encode() + b"\0" + (path.read_bytes() if path else b"") + b"\0")
        _DIGESTS[stamp] = digest.hexdigest()[:16]
    return _DIGESTS[stamp]
