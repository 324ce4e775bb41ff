"""Training machinery shared by the landmark networks.

Generic parts: ``crop_cache`` (pre-computed canonical face crops), ``augment``
(one-warp geometric + photometric augmentation), ``loop`` (epochs, schedule,
checkpoints, logs) and ``checkpoint``. Model-specific parts live in a ``Task``
(``tasks``): input size, targets, loss and how outputs become points.
"""
