"""The compared methods: a display name, a folder name, and how a run of it is set up (a strategy
class and whether A is trained, or config files layered on the base config: an "arm")."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # as shown in the tables
    slug: str  # the run folder's name (no spaces or slashes)
    strategy: str | None  # class path given to --strategy (None: the configs say)
    use_aux: bool | None  # --model.use_aux (None: the configs say)
    configs: tuple[str, ...] = ()  # config files layered after the base config
    options: tuple[str, ...] = ()  # further options the method cannot do without

    def config_options(self) -> list[str]:
        """``--config`` for each of the method's config files (they come after the base configs)."""
        return [a for c in self.configs for a in ("--config", c)]

    def strategy_options(self) -> list[str]:
        """``--strategy`` and ``--model.use_aux``, where the method sets them."""
        out = []
        if self.strategy is not None:
            out += ["--strategy", self.strategy]
        if self.use_aux is not None:
            out += ["--model.use_aux", "true" if self.use_aux else "false"]
        return out + list(self.options)


def arm(spec: str) -> Method:
    """``NAME=CONFIG[,CONFIG...]``: a method set up by config files (strategy, backbone, weights,
    anything), run in folder NAME (letters, digits, '.', '_', '-')."""
    name, sep, files = spec.partition("=")
    name = name.strip()
    if not sep or not files.strip() or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"--arm {spec!r}: give NAME=CONFIG[,CONFIG...] with a NAME of letters, digits, '.', '_', '-'")
    return Method(name, name, None, None, tuple(f.strip() for f in files.split(",") if f.strip()))


def _m(name: str, cls: str, use_aux: bool, slug: str | None = None, options: tuple[str, ...] = ()) -> Method:
    return Method(name, slug or name, f"lplgrad.strategies.{cls}", use_aux, options=options)


#: the dropout the BALD papers put before a CNN's classifier (Gal et al. 2017; Kirsch et al. 2019)
BALD_DROPOUT = ("--model.head_dropout", "0.5")
#: WAAL's training of M against a Wasserstein critic (docs/method.md §8)
WAAL_CRITIC = ("--model.adversary", "lplgrad.adversary.WAALAdversary")
#: M and A started again from their initial weights every round
FROM_SCRATCH = ("--model.retrain_from_scratch", "true")


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

#: strategies for pretrained backbones and cold start, not in the paper's comparison
EXTRA: tuple[Method, ...] = (_m("BADGE", "BADGE", False), _m("TypiClust", "TypiClust", False))

#: the methods of the related work and of other tools (docs/method.md §8), and the from-scratch arms
RELATED: tuple[Method, ...] = (
    _m("BALD", "BALD", False, options=BALD_DROPOUT),
    _m("BatchBALD", "BatchBALD", False, options=BALD_DROPOUT),
    _m("VAAL", "VAAL", False),
    _m("WAAL", "WAAL", False, options=WAAL_CRITIC),
    _m("ProbCover", "ProbCover", False),
    _m("LPLgrad (from scratch)", "LPLgrad", True, slug="LPLgrad-scratch", options=FROM_SCRATCH),
    _m("Random (from scratch)", "Random", False, slug="Random-scratch", options=FROM_SCRATCH),
)

ALL: tuple[Method, ...] = (*METHODS, ABLATION, *EXTRA, *RELATED)


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
