"""One generic registry for attacks, defenses, models and scenarios.

A class registers under a name with a decorator (as timm's ``register_model``); a duplicate name is
an error; an unknown name is an error that lists the valid names and the closest match.
Third-party packages register through entry points (``clipbench.attacks``, ``clipbench.defenses``,
``clipbench.detectors``):
their names are listed without importing them, and their module is imported on first use.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ClipbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered classes of one kind (``kind`` is used in messages)."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), entry_point_group: str | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtin_modules = builtin_modules
        self._entry_point_group = entry_point_group
        self._builtins_loaded = False
        self._families: list[tuple[str, Callable[[str], T], Callable[[], list[str]]]] = []
        self._family_built: set[str] = set()

    def add_family(self, prefix: str, factory: Callable[[str], T], members: Callable[[], list[str]]) -> None:
        """Names ``prefix + m`` for every ``m`` of ``members()``, each built by ``factory(m)`` on
        first use (e.g. ``filter-kdistance``: a detector composed with training). Family names are
        valid everywhere a name is, and listed by :meth:`family_names`, not by :meth:`names` (so
        ``all`` does not include them)."""
        self._families.append((prefix, factory, members))

    def family_names(self) -> list[str]:
        """Every name of every family, sorted."""
        return sorted(prefix + member for prefix, _, members in self._families for member in members())

    def valid_names(self) -> list[str]:
        """:meth:`names` and :meth:`family_names`: every name ``get`` accepts."""
        return self.names() + self.family_names()

    def _from_family(self, name: str) -> None:
        for prefix, factory, members in self._families:
            if name.startswith(prefix) and name[len(prefix):] in members():
                self.register(name)(factory(name[len(prefix):]))
                self._family_built.add(name)
                return

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated class under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ClipbenchError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            if isinstance(obj, type):
                obj.registry_name = name
            return obj

        return decorator

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

    def _entry_points(self) -> dict:
        if self._entry_point_group is None:
            return {}
        return {ep.name: ep for ep in entry_points(group=self._entry_point_group)}

    def names(self) -> list[str]:
        """Every registered name, built-in and from entry points, sorted."""
        self._load_builtins()
        return sorted((set(self._items) - self._family_built) | set(self._entry_points()))

    def get(self, name: str) -> T:
        """The class registered as ``name``; an unknown name raises with the valid ones."""
        self._load_builtins()
        if name not in self._items:
            entry = self._entry_points().get(name)
            if entry is not None:
                loaded = entry.load()
                self._items.setdefault(name, loaded)
                if isinstance(loaded, type):
                    loaded.registry_name = name
        if name not in self._items:
            self._from_family(name)
        if name not in self._items:
            valid = self.valid_names()
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ClipbenchError(f"unknown {self.kind} {name!r}; valid: {', '.join(valid)}.{hint}")
        return self._items[name]

    def resolve_list(self, spec: str) -> list[str]:
        """Parse a comma-separated list of names, or ``all``, checking each name."""
        if spec.strip() == "all":
            return self.names()
        parts = [part.strip() for part in spec.split(",")]
        names = [part for part in parts if part]
        if not names:
            raise ClipbenchError(f"empty list of {self.kind}s")
        if len(names) < len(parts):
            raise ClipbenchError(f"{self.kind}s {spec!r}: an empty name between commas")
        for name in names:
            self.get(name)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ClipbenchError(f"{self.kind}s {spec!r}: {', '.join(repeated)} listed twice")
        return names

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


ATTACKS: Registry = Registry(
    "attack",
    tuple(f"clipbench.attacks.{m}" for m in ("badnet", "blended", "wanet", "sig", "badclip", "label_consistent", "targeted")),
    "clipbench.attacks",
)
DEFENSES: Registry = Registry(
    "defense",
    tuple(f"clipbench.defenses.{m}" for m in ("none", "finetune", "cleanclip", "abd", "par", "roclip", "safeclip")),
    "clipbench.defenses",
)
DETECTORS: Registry = Registry(
    "detector",
    tuple(f"clipbench.detectors.{m}" for m in ("kdistance", "slof", "dao", "similarity", "strip", "decree")),
    "clipbench.detectors",
)
PRESETS: Registry = Registry("preset", ("clipbench.presets",))


def _filter_defense(detector: str):
    from clipbench.defenses.filter import filter_defense

    return filter_defense(detector, DETECTORS.get(detector))


#: ``filter-<detector>``: every data-level detector composed with training (``clipbench.defenses.filter``).
DEFENSES.add_family("filter-", _filter_defense,
                    lambda: [name for name in DETECTORS.names() if DETECTORS.get(name).level == "data"])
MODELS: Registry = Registry("model", ("clipbench.model_zoo",))
REPRODUCTIONS: Registry = Registry("reproduction", ("clipbench.reproduce", "clipbench.reproduce_claims"))


def register_attack(name: str):
    """Register an attack class (a subclass of :class:`clipbench.attacks.base.Attack`)."""
    return ATTACKS.register(name)


def register_defense(name: str):
    """Register a defense class (a subclass of :class:`clipbench.defenses.base.Defense`)."""
    return DEFENSES.register(name)


def register_detector(name: str):
    """Register a detector class (a subclass of :class:`clipbench.detectors.base.Detector`)."""
    return DETECTORS.register(name)
