"""Zero-shot IAB baseline: AudioSet outputs max-pooled onto IAB labels, scored on a holdout fold."""
import argparse
import json
import math

import h5py
import numpy as np
import pytest
import torch

from helpers import write_tone
from pytorch.models import create_model
from utils import config
from utils.features import pack_to_hdf5
from utils.iab_labels import load_label_set, mapping_matrix, read_audioset_classes
from utils.metrics import compute_metrics
from utils.utilities import UsageError
from pytorch.zero_shot import add_zero_shot_parser, map_audioset_to_labels

SR = 32000
AUDIO = dict(sample_rate=SR, window_size=config.WINDOW_SIZE, hop_size=config.HOP_SIZE,
             mel_bins=config.MEL_BINS, fmin=config.FMIN, fmax=config.FMAX)


def test_map_audioset_to_labels_max_pools_mapped_classes():
    probabilities = np.array([[0.1, 0.7, 0.3, 0.9, 0.5],
                              [0.6, 0.2, 0.8, 0.0, 0.4]])
    matrix = np.array([[1, 0, 0, 0],   # class 0 -> label 0
                       [1, 0, 0, 0],   # class 1 -> label 0
                       [0, 1, 1, 0],   # class 2 -> labels 1 and 2
                       [0, 0, 0, 0],   # class 3 -> nothing (its 0.9 must not leak)
                       [0, 1, 0, 0]],  # class 4 -> label 1; label 3 has no class -> 0
                      dtype=np.float32)
    np.testing.assert_array_equal(map_audioset_to_labels(probabilities, matrix),
                                  [[0.7, 0.5, 0.3, 0.0], [0.6, 0.8, 0.8, 0.0]])
    with pytest.raises(ValueError):
        map_audioset_to_labels(probabilities, matrix[:4])


def test_map_audioset_to_labels_with_the_committed_mapping():
    mids = [mid for mid, _ in read_audioset_classes()]
    probabilities = np.full((1, 527), 0.01, dtype=np.float32)
    probabilities[0, mids.index("/m/04rlf")] = 0.9   # Music
    probabilities[0, mids.index("/m/0bt9lr")] = 0.6  # Dog
    probabilities[0, mids.index("/m/09x0r")] = 0.99  # Speech: mapped to no IAB label
    mapped = map_audioset_to_labels(probabilities, mapping_matrix(5))
    by_label = dict(zip(load_label_set(5), mapped[0]))
    assert by_label["Music"] == pytest.approx(0.9) and by_label["Pets"] == pytest.approx(0.6)
    assert by_label["Automotive"] == pytest.approx(0.01)


@pytest.fixture(scope="module")
def tiny_iab(tmp_path_factory):
    """A randomly initialised Cnn14 in the official checkpoint format, and 30 packed clips."""
    root = tmp_path_factory.mktemp("zero_shot")
    torch.manual_seed(0)
    checkpoint = root / "Cnn14_random.pth"
    torch.save({"model": create_model("Cnn14", **AUDIO, classes_num=527).state_dict()},
               checkpoint)

    labels = load_label_set(5)
    random_state = np.random.RandomState(0)
    items = []
    for index in range(30):
        path = write_tone(str(root / "audio" / f"clip{index}.wav"), 200 + 60 * index, 1.0, SR)
        target = (random_state.rand(len(labels)) < 0.4).astype(np.float32)
        target[index % len(labels)] = 1  # every label has positives
        items.append((f"clip{index}.wav", path, target))
    features = root / "iab5.h5"
    pack_to_hdf5(items, labels, config.MULTI_LABEL, str(features), clip_duration=1.0)
    return root, checkpoint, features


def zero_shot(*argv):
    parser = argparse.ArgumentParser()
    add_zero_shot_parser(parser.add_subparsers(dest="mode"))
    args = parser.parse_args(["zero_shot", *map(str, argv)])
    return args.handler(args)


def test_zero_shot_metrics_match_the_model_outputs(tiny_iab):
    root, checkpoint, features = tiny_iab
    workspace = root / "ws"
    zero_shot(f"--workspace={workspace}", f"--features={features}",
              f"--pretrained_checkpoint_path={checkpoint}", "--holdout_fold=2",
              "--batch_size=2", "--num_workers=0")
    path = workspace / "results" / "zero_shot" / "holdout_fold=2" / "iab5" / "metrics.json"
    saved = json.loads(path.read_text())

    # Recompute independently: the checkpoint's Cnn14 on the fold-2 clips, max-pooled per label.
    with h5py.File(features, "r") as hf:
        holdout = hf["fold"][:] == 2
        waveforms = hf["waveform"][:][holdout] / 32767.0
        targets = hf["target"][:][holdout]
    model = create_model("Cnn14", **AUDIO, classes_num=527,
                         pretrained_checkpoint_path=str(checkpoint)).eval()
    with torch.no_grad():
        audioset = model(torch.as_tensor(waveforms, dtype=torch.float32))["clipwise_output"].numpy()
    mapped = map_audioset_to_labels(audioset, mapping_matrix(5))
    expected = compute_metrics(config.MULTI_LABEL, mapped, targets, 0.5)

    assert saved["clips"] == int(holdout.sum()) >= 2
    assert saved["labels"] == load_label_set(5) and saved["label_set"] == "iab5"
    assert saved["mapping"] == "metadata/audioset_to_iab_5.csv" and saved["holdout_fold"] == 2
    for key in ("mAP", "macro_f1", "micro_f1", "accuracy"):
        assert saved[key] == pytest.approx(expected[key], abs=1e-6), key
    np.testing.assert_allclose(saved["per_class_f1"], expected["per_class_f1"], atol=1e-6)
    for saved_ap, expected_ap in zip(saved["per_class_ap"], expected["per_class_ap"]):
        if math.isnan(expected_ap):
            assert saved_ap is None  # strict JSON: NaN is written as null
        else:
            assert saved_ap == pytest.approx(expected_ap)
    assert not list(path.parent.glob("*.tmp"))


def test_zero_shot_needs_the_mappings_labels(tiny_iab, tmp_path):
    root, checkpoint, features = tiny_iab
    with pytest.raises(UsageError, match=r"not the 20-label IAB set .* --iab_labels=20"):
        zero_shot(f"--workspace={tmp_path}", f"--features={features}",
                  f"--pretrained_checkpoint_path={checkpoint}", "--iab_labels=20")

    custom = tmp_path / "custom.h5"
    items = [(f"c{index}.wav", str(root / "audio" / f"clip{index}.wav"), np.array([1.0, 0.0]))
             for index in range(3)]
    pack_to_hdf5(items, ["speech", "noise"], config.MULTI_LABEL, str(custom), clip_duration=1.0)
    with pytest.raises(UsageError, match=r"\(speech; noise\) are not an IAB label set"):
        zero_shot(f"--workspace={tmp_path}", f"--features={custom}",
                  f"--pretrained_checkpoint_path={checkpoint}")
