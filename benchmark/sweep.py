"""Budget sweeps: one defense setting varied over several values, so that each defense is a curve of
(CA, ASR) points instead of one point (the cleaning-budget curves of PAR, arXiv 2412.00727).

``--sweep defense.lr=1e-5,1e-4,5e-4`` runs every selected defense whose config has ``lr`` once per
value; ``--sweep cleanclip.lr=...`` only CleanCLIP. Cells the sweep does not reach (``none``, a
defense without the key) run once at their own settings: they anchor the curves. A sweep cell is an
ordinary cell with one more ``--set`` value and a ``sweep`` tag in its result, which keeps it out of
the leaderboard tables (those show each method's own budget) and puts it on the curves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ClipbenchError


@dataclass(frozen=True)
class Sweep:
    """One config key of the defense side and the values it takes (strings, typed by the config)."""

    section: str
    key: str
    values: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def parse_sweep(text: str) -> Sweep:
    """``SECTION.KEY=V1,V2,...`` -> :class:`Sweep`; SECTION is ``defense`` or a defense's name."""
    from .registry import DEFENSES

    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ClipbenchError(f"--sweep {text!r}: expected section.key=v1,v2,... (e.g. defense.lr=1e-5,1e-4)")
    path, raw = text.split("=", 1)
    section, key = (part.strip() for part in path.split(".", 1))
    values = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    if section != "defense" and section not in DEFENSES.valid_names():
        raise ClipbenchError(f"--sweep {path}: a sweep varies a defense's budget; the section must be 'defense' "
                             f"or a defense name ({', '.join(DEFENSES.names())})")
    if len(values) < 2:
        raise ClipbenchError(f"--sweep {path}: give at least two values, comma-separated")
    return Sweep(section, key, values)


def reaches(sweep: Sweep, defense: str) -> bool:
    """Whether ``sweep`` varies ``defense``: its section names it (or is ``defense``) and its config has the key."""
    from .cells import config_keys
    from .registry import DEFENSES

    return sweep.section in ("defense", defense) and sweep.key in config_keys(DEFENSES.get(defense))


def expand(requests: list, sweep: Sweep | None) -> list:
    """Every request once per sweep value where the sweep reaches its defense, else once as it is."""
    if sweep is None:
        return list(requests)
    if not any(reaches(sweep, r.defense) for r in requests):
        defenses = sorted({r.defense for r in requests})
        raise ClipbenchError(f"--sweep {sweep.name}: no selected defense ({', '.join(defenses)}) has the key {sweep.key!r}")
    from .registry import DEFENSES

    for defense in sorted({r.defense for r in requests if reaches(sweep, r.defense)}):
        value = getattr(DEFENSES.get(defense).default_config(), sweep.key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ClipbenchError(f"--sweep {sweep.name}: {defense}'s {sweep.key} is not a number; "
                                 "a sweep varies a numeric budget (learning rate, epochs, a strength)")
    expanded = []
    for request in requests:
        if not reaches(sweep, request.defense):
            expanded.append(request)
            continue
        if sweep.key in request.overrides.get(sweep.section, {}):
            raise ClipbenchError(f"--sweep {sweep.name} and --set {sweep.name} both set the same value: give one")
        for value in sweep.values:
            overrides = {section: dict(values) for section, values in request.overrides.items()}
            overrides.setdefault(sweep.section, {})[sweep.key] = value
            expanded.append(dataclasses.replace(request, overrides=overrides, sweep=sweep.name))
    return expanded
