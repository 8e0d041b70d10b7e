"""Model files: the official converter, ``save_pretrained`` folders, initialisation, integrity.

* :mod:`~trecvit.checkpoints.official`: the official JAX ``.npz`` checkpoint to
  PyTorch (``trecvit convert``, :func:`trecvit.load_official_checkpoint`);
* :mod:`~trecvit.checkpoints.pretrained`: the ``config.json`` +
  ``model.safetensors`` (+ ``preprocessor_config.json``) folder that every
  architecture's ``save_pretrained`` writes and ``from_pretrained`` reads;
* :mod:`~trecvit.checkpoints.auto`: load any model folder or file, whatever its
  architecture (the architecture table decides the class);
* :mod:`~trecvit.checkpoints.weights`: initialise a model for training from a
  TRecViT checkpoint, and :mod:`~trecvit.checkpoints.vit` from an ImageNet ViT,
  with the weight-file formats in :mod:`~trecvit.checkpoints.formats`, the ViT
  layouts in :mod:`~trecvit.checkpoints.layouts` and the conversion tables
  (the one Flax ViT block mapping) in :mod:`~trecvit.checkpoints.entries`;
* :mod:`~trecvit.checkpoints.integrity`: atomic writes and per-tensor checksums,
  also used by the training checkpoints.

Nothing here unpickles: only ``.npz`` (``allow_pickle=False``) and safetensors
are read. This package imports no model, so the model core can use its file
format without an import circle; import the modules above directly.
"""
