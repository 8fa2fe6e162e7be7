"""``python -m lplgrad.serve``: a Label Studio ML backend (docs/labeling.md, "Label Studio ML backend").

Label Studio calls its routes (:mod:`~lplgrad.serve.app`); one background thread
(:mod:`~lplgrad.serve.worker`) trains the labeling app's network on the project's labels and
re-scores every open task (:mod:`~lplgrad.serve.training`, :mod:`~lplgrad.serve.scoring`),
replacing its own older predictions (:mod:`~lplgrad.serve.cleanup`); what must survive a restart
is in the state folder (:mod:`~lplgrad.serve.state`).
"""
