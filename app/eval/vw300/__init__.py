"""``python -m app eval300vw ROOT``: frame-by-frame accuracy, jitter and speed on 300-VW style clips.

ROOT holds clip folders (``ID/vid.avi`` + ``ID/annot/NNNNNN.pts``, or ``ID/imgs/`` +
``ID/annot/``), read through ``app.sources.Clip300VWSource``. Every frame goes
through the same ``Pipeline`` as the app, in tracking mode unless
``--detect-every-frame``. With ``--boxes gt`` the ground truth's five points replace
the detector on every annotated frame (the "oracle" protocol of some papers); the
report names the protocol that ran.

Per frame: NME_io over the 68 points and the 49 inner points (``landmarks68.INNER_49``)
for the landmarks the user sees (smoothed, unless ``--no-smooth``) and for the raw
ones. The face scored on a frame is the tracked face whose box overlaps the ground
truth's box most; no overlapping face is a miss (error infinity: a failure at every
threshold, nothing added to the AUC, left out of NME means: see ``models.metrics``).
Frames without annotation and frames on the ``--unreliable`` list are still tracked
but not scored; they are counted.

Jitter of the error: for two consecutive scored frames,
``mean_i || (p_t,i - g_t,i) - (p_t-1,i - g_t-1,i) || / io_t`` (io from the ground
truth of frame t); true motion, which moves p and g alike, costs nothing. On static
clips (g constant) it is plainly the landmarks' frame-to-frame movement.

Lag of the smoothing, in frames: the shift k that best aligns the shown (smoothed)
trajectory with the raw one, ``argmin_k sum_t mean_i ||s_t,i - r_i(t - k)||^2 / io_t^2``,
with r linearly interpolated between frames, k on a 0.05-frame grid in [-2, 6], over
frames whose 7 previous and 2 next frames are all scored. Pooled over clips by adding
their cost curves. A One Euro filter's lag depends on speed; this is the lag that
best explains the smoothed track, weighted by how much the face moves. The same
estimate against the ground truth (smoothed vs truth, raw vs truth) is kept as a check.

Output folder (default ``out/eval300vw/<root>/<model>-<boxes>-<mode>-<smoothing>``):
``clips/<ID>.csv`` (per frame), ``clips/<ID>.json`` (clip summary; its presence
with the same settings marks the clip done, so an interrupted run resumes),
``clips/<ID>.npz`` (ground truth, shown and raw points), ``frames.csv``, ``clips.csv``,
``categories.csv``, ``ced_<category>.png`` and ``report.md``.

One job per module: ``config`` (the settings that change the predictions), ``clips`` (finding
and selecting clip folders, the ``--unreliable`` list), ``measures`` (jitter, lag, which face
is scored), ``score`` (one clip through the pipeline, scored frame by frame), ``resume``
(finished clips saved and reused), ``report`` (category summaries, CSV files and
``report.md``), ``run`` (``evaluate``: the whole run), ``records`` (the data classes and
row fields they share) and ``command`` (the command line).
"""
