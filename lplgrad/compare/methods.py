"""The compared methods: a display name, a folder name, the strategy class and whether A is trained."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # as shown in the tables
    slug: str  # the run folder's name (no spaces or slashes)
    strategy: str  # class path given to --model.strategy
    use_aux: bool  # --model.use_aux


def _m(name: str, cls: str, use_aux: bool, slug: str | None = None) -> Method:
    return Method(name, slug or name, f"lplgrad.strategies.{cls}", use_aux)


#: the paper's methods (Table III) and the other uncertainty baselines, in table order
METHODS: tuple[Method, ...] = (
    _m("LPLgrad", "LPLgrad", True),
    _m("Ent-GradNorm", "EntGradNorm", False),
    _m("LearningLoss", "LearningLoss", True),
    _m("Entropy", "Entropy", False),
    _m("Margin", "Margin", False),
    _m("LeastConfidence", "LeastConfidence", False),
    _m("Coreset", "Coreset", False),
    _m("Random", "Random", False),
)

#: the ablation of Tables V/VI: LPLgrad's query with M trained alone. By docs/method.md §4 this is
#: the same computation as Ent-GradNorm (same score, M alone); it is run under its own name.
ABLATION = _m("LPLgrad w/o A", "LPLgrad", False, slug="LPLgrad-wo-A")

ALL: tuple[Method, ...] = (*METHODS, ABLATION)


def by_key(key: str) -> Method:
    """A preset by its display name or folder name, case-insensitive."""
    k = key.strip().lower()
    for m in ALL:
        if k in (m.name.lower(), m.slug.lower()):
            return m
    raise KeyError(f"unknown method {key!r}; known: {', '.join(m.name for m in ALL)}")


def choose_methods(names: Iterable[str] | None = None, ablation: bool = False) -> list[Method]:
    """The presets named (all of :data:`METHODS` when ``names`` is None), plus the ablation."""
    chosen = list(METHODS) if names is None else [by_key(n) for n in names]
    if ablation and ABLATION not in chosen:
        chosen.append(ABLATION)
    seen: list[Method] = []
    for m in chosen:
        if m not in seen:
            seen.append(m)
    return seen


def display_name(slug: str) -> str:
    """The display name of a run folder: the preset's name, or the folder name itself."""
    for m in ALL:
        if m.slug == slug:
            return m.name
    return slug


def order_key(name: str) -> tuple[int, str]:
    """Sort key: presets in table order, then any other method alphabetically."""
    names = [m.name for m in ALL]
    return (names.index(name), "") if name in names else (len(names), name)
