"""Self-supervised pretraining of a backbone on unlabelled images (``python -m lplgrad pretrain``).

SimCLR or BYOL on the images of a dataset config or of an image folder, never their labels;
the result is a weights file that ``model.backbone.init_args.weights`` takes (docs/pretraining.md).

- :mod:`~lplgrad.pretrain.views`: the two augmented views of an image (lightly's transforms)
- :mod:`~lplgrad.pretrain.data`: the unlabelled images and their loader
- :mod:`~lplgrad.pretrain.module`: the LightningModule (backbone, heads, loss, optimiser)
- :mod:`~lplgrad.pretrain.report`: the lines printed and the weights file written
- :mod:`~lplgrad.pretrain.cli`: the command line

lightly (the ``ssl`` extra) is imported by the modules above, not here: ``import lplgrad.pretrain``
works without it, and the command line says how to install it.
"""
