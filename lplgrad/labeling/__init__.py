"""Labeling your own images: rank a folder, export what to label next, import the labels, go on.

``python -m lplgrad.label`` (see :mod:`lplgrad.labeling.cli` and docs/labeling.md).
"""

from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.labels import LabelingError, Labels, Problem, parse_classes, read_labels
from lplgrad.labeling.scan import FolderScan, Skipped, scan_folder

__all__ = [
    "FolderScan",
    "LabelFolderData",
    "LabelingError",
    "Labels",
    "Problem",
    "Skipped",
    "parse_classes",
    "read_labels",
    "scan_folder",
]
