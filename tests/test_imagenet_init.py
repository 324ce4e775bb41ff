"""The shared ImageNet MobileNetV2 (TFLite) converted into our backbone."""
from __future__ import annotations

import numpy as np
import pytest

from tests.peers import require_peers  # noqa: E402

require_peers("torch")  # the train extra: the core stack (no torch) skips this file
pytestmark = pytest.mark.peers("torch")

import torch  # noqa: E402

from models.nets.mobilenetv2 import MobileNetV2Features  # noqa: E402
from models.training.imagenet_init import (  # noqa: E402
    bn_from_data,
    default_tflite,
    imagenet_classifier,
    imagenet_logits,
    load_into_features,
    read_tflite_convolutions,
)
from tests.conftest import read_image  # noqa: E402


@pytest.fixture(scope="module")
def convs():
    path = default_tflite()
    assert path.is_file(), f"ImageNet TFLite file not found at {path}"
    return read_tflite_convolutions(path)


def test_file_holds_backbone_and_classifier(convs):
    assert len(convs) == 53  # 52 backbone convolutions + the 1x1 classifier
    assert convs[0].weight.shape == (32, 3, 3, 3)
    assert convs[1].depthwise and convs[1].weight.shape == (32, 1, 3, 3)
    assert convs[-2].weight.shape == (1280, 320, 1, 1)
    assert convs[-1].weight.shape == (1001, 1280, 1, 1)


def test_converted_network_ranks_the_cat_first(convs):
    features = MobileNetV2Features().eval()
    load_into_features(features, convs)
    image = read_image(default_tflite().parent / "cat_224.png")[:, :, ::-1]
    logits = imagenet_logits(features, imagenet_classifier(convs), np.ascontiguousarray(image))
    labels = (default_tflite().parent / "imagenet_labels.txt").read_text().splitlines()
    top3 = [labels[k] for k in torch.topk(logits, 3).indices.tolist()]
    assert all("cat" in name for name in top3), top3


def test_bn_from_data_keeps_the_function(convs):
    """Data-fitted BN is the same eval-mode function, and train mode on that batch is close to it."""
    torch.manual_seed(0)
    features = MobileNetV2Features().eval()
    load_into_features(features, convs)
    images = torch.rand(8, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        before = features(images)
        bn_from_data(features, images)
        after = features(images)
        features.train()
        in_train_mode = features(images)
    assert torch.allclose(before, after, atol=1e-3 * before.abs().max().item())
    relative = (in_train_mode - before).norm() / before.norm()
    assert relative < 0.05, relative.item()
