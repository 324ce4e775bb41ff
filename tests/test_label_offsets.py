"""app.eval.label_offsets: per-source offsets and the mirror check, on real faces with a shipped network."""
import numpy as np

from app.eval.label_offsets import measure, mirror_points
from models.datasets import data_root, list_annotated
from models.landmarks68 import LEFT_EYE, RIGHT_EYE


def test_mirroring_points_twice_gives_them_back_and_keeps_the_image_left_eye_on_the_left():
    gt = list_annotated(data_root() / "300w" / "helen_train")[0].load_points()
    width = 1000
    np.testing.assert_allclose(mirror_points(mirror_points(gt, width), width), gt)
    mirrored = mirror_points(gt, width)
    assert mirrored[list(LEFT_EYE), 0].mean() < mirrored[list(RIGHT_EYE), 0].mean()


def test_the_mirror_check_measures_the_mirrored_images_too():
    from app.eval.evaluate import load_model

    with load_model("r18_ffld@fp32") as model:
        plain = measure(model, "300w/helen_train", limit=4)
        checked = measure(model, "300w/helen_train", limit=4, mirror_check=True)
    assert plain.mirror_dx_px is None and "mirror_dx" not in plain.line()
    assert checked.n == 4 and np.isfinite(checked.mirror_dx_px) and "mirror_dx=" in checked.line()
    assert checked.dx_px == plain.dx_px  # the plain figures do not change
    assert abs(checked.mirror_dx_px) < 3.0  # pixels: the points mapped back land on the face
