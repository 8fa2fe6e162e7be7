"""Per-sample gradient norms of a per-sample loss with respect to a model's parameters.

:func:`per_sample_sq_norms` is the batched computation the LPLgrad query runs;
:func:`per_sample_sq_norms_loop` is the one-sample-at-a-time definition (the test oracle);
:func:`combine` turns per-tensor squared norms into a score (paper Eq. 8, docs/method.md §3).
"""

from lplgrad.gradnorm.batched import UnsupportedModel, per_sample_sq_norms, supports
from lplgrad.gradnorm.reference import SampleLoss, combine, per_sample_sq_norms_loop

__all__ = ["SampleLoss", "UnsupportedModel", "combine", "per_sample_sq_norms", "per_sample_sq_norms_loop", "supports"]
