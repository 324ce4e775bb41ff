"""Training machinery shared by the landmark networks.

Generic parts: ``crop_cache`` (pre-computed canonical face crops), ``augment``
(one-warp geometric + photometric augmentation), ``loop`` (epochs, schedule,
checkpoints, logs) and ``checkpoint`` (run folders, resumable checkpoints, a
continuation's starting weights). Model-specific parts live in a ``Task`` (the
interface in ``task``; ``heatmap_task``, ``ffld_task``; ``tasks`` picks one): input
size, targets, loss and how outputs become points. ``ffld_eval`` and
``ffld_benchmark`` are r18_ffld's report and step-benchmark commands.
"""
