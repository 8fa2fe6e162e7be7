"""A dataset whose labels cannot be read: the pretraining tests prove that no label is touched."""

from __future__ import annotations

from lplgrad.datasets import Digits, Images


class LabelsRead(AssertionError):
    """A label was read where none may be."""


class Untouchable:
    """Stands in for a dataset's ``targets``: its length is known (how many images there are),
    any other use (indexing, iterating, converting, any attribute) is counted and raises."""

    reads = 0  # every attempt, in this process, even one whose exception was swallowed

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def _read(self, what: str):
        type(self).reads += 1
        raise LabelsRead(f"a label was read ({what})")

    def __getitem__(self, i):
        self._read(f"targets[{i!r}]")

    def __iter__(self):
        self._read("iter(targets)")

    def __array__(self, *args, **kwargs):
        self._read("numpy.asarray(targets)")

    def __getattr__(self, name: str):
        self._read(f"targets.{name}")


class DigitsWithoutLabels(Digits):
    """scikit-learn's digits (lplgrad.datasets.Digits) with their labels replaced by :class:`Untouchable`."""

    def load(self, train: bool) -> Images:
        images = super().load(train)
        images.targets = Untouchable(len(images.targets))
        return images
