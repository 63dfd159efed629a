"""The backbone the project pretrains and ships (metadata/pretrained/): found as its published
architecture, loaded by the same code as an official file, its weights the start of a fine-tune,
a damaged copy refused; the export that writes it; the recipe that makes it."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import REPO_DIR, run_script, tone
from pytorch import main
from pytorch.checkpoints import load_checkpoint_file
from pytorch.configure import train_run_config
from pytorch.main import build_parser, train_flags
from pytorch.models import TAGGERS
from pytorch.published import identify_checkpoint, published_models
from pytorch.restore import load_trained_model
from pytorch.run_setup import build_model
from scripts.demo.sounds import SOUND_LABELS
from utils.config import GTZAN_LABELS
from utils.features import pack_to_hdf5

SHIPPED = os.path.join(REPO_DIR, "metadata", "pretrained", "MobileNetV2_sounds.pth")
CARD = os.path.splitext(SHIPPED)[0] + ".json"


def card():
    with open(CARD, encoding="utf-8") as f:
        return json.load(f)


def test_the_shipped_backbone_is_a_published_mobilenetv2_that_its_card_describes():
    with open(SHIPPED, "rb") as f:
        data = f.read()
    described = card()
    assert len(data) <= 20_000_000 and described["bytes"] == len(data)
    assert hashlib.sha256(data).hexdigest() == described["sha256"]
    found = identify_checkpoint(SHIPPED)
    assert found.name == "MobileNetV2" == described["architecture"]
    assert found.classes_num == len(described["source_labels"]) == len(SOUND_LABELS)
    assert found.audio == published_models()["MobileNetV2"]["audio"]
    assert not set(described["source_labels"]) & set(GTZAN_LABELS)  # no genre among them
    assert described["source_task"] == "multi_label"
    assert 0.25 < described["source_metrics"]["mAP"] <= 1.0  # labels alone: 0.17 (untrained)
    state = load_checkpoint_file(SHIPPED)["model"]  # weights-only, as every checkpoint
    published = set(published_models()["MobileNetV2"]["state_dict"])
    assert {f"{key} {'x'.join(map(str, value.shape))}" for key, value in state.items()
            if not key.startswith("fc_audioset")} == {
        entry for entry in published if not entry.startswith("fc_audioset")}


def train_config(features, *flags):
    args = build_parser().parse_args(["train", f"--workspace={os.path.dirname(features)}",
                                      f"--features={features}", *flags])
    return train_run_config(train_flags(args))


def test_fine_tuning_from_it_starts_with_the_files_weights(features):
    """No --model_type: the run is Transfer_MobileNetV2 from the file's tensors; the model it
    trains holds the file's tensors, all but the source task's output layer it never reads."""
    run = train_config(features, f"--pretrained_checkpoint_path={SHIPPED}")
    assert run.model_type == "Transfer_MobileNetV2"
    assert run.pretrained_checkpoint_path == SHIPPED
    model = build_model(run, torch.device("cpu"))
    base = model.base.state_dict()
    state = load_checkpoint_file(SHIPPED)["model"]
    assert set(base) == set(state)
    for key, value in state.items():
        if key.startswith("fc_audioset"):
            assert base[key].shape[0] == 527 and value.shape[0] == 36
        else:
            assert torch.equal(base[key], value), key


def copy_with_card(tmp_path):
    copy = tmp_path / "MobileNetV2_sounds.pth"
    shutil.copyfile(SHIPPED, copy)
    shutil.copyfile(CARD, tmp_path / "MobileNetV2_sounds.json")
    return copy


def train_command(tmp_path, features, backbone):
    return ["pytorch/main.py", "train", f"--workspace={tmp_path / 'ws'}", f"--features={features}",
            f"--pretrained_checkpoint_path={backbone}", "--stop_iteration=1", "--num_workers=0"]


@pytest.mark.parametrize("damage", ["truncated", "one byte changed", "truncated, no card"])
def test_a_damaged_copy_is_refused_in_one_line(tmp_path, features, damage):
    copy = copy_with_card(tmp_path)
    data = bytearray(copy.read_bytes())
    if damage == "one byte changed":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[:len(data) // 2]
    copy.write_bytes(bytes(data))
    if damage.endswith("no card"):
        os.remove(tmp_path / "MobileNetV2_sounds.json")
    result = subprocess.run([sys.executable, *train_command(tmp_path, features, copy)],
                            cwd=REPO_DIR, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == result.stderr.strip().splitlines()[-1]
    assert f"--pretrained_checkpoint_path={copy}" in error
    if damage.endswith("no card"):
        assert "is it complete?" in error
    else:
        assert "the file is damaged, truncated or replaced" in error
    assert not (tmp_path / "ws" / "statistics").exists()  # refused before claiming a run


def multi_label_features(tmp_path, labels=("low", "high", "noise")):
    """Clips tagged with the tones (and noise) they hold: a small multi-label source task."""
    items, rng = [], np.random.default_rng(0)
    for index in range(24):
        present = rng.random(len(labels)) < 0.5
        audio = 0.01 * rng.standard_normal(32000)
        audio += present[0] * tone(220, 1.0, 32000, 0.3) + present[1] * tone(1760, 1.0, 32000, 0.3)
        audio += present[2] * 0.2 * rng.standard_normal(32000)
        path = tmp_path / "source" / f"clip{index}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, audio.astype(np.float32), 32000)
        items.append((f"clip{index}.wav", str(path), present.astype(np.float32)))
    features = str(tmp_path / "source.h5")
    pack_to_hdf5(items, list(labels), "multi_label", features, clip_duration=1.0)
    return features


@pytest.mark.slow
def test_export_writes_the_official_layout_that_tags_as_the_run_did(tmp_path):
    features = multi_label_features(tmp_path)
    main.main(["train", f"--workspace={tmp_path}", f"--features={features}",
               "--model_type=Transfer_MobileNetV2", "--batch_size=4", "--num_workers=0",
               "--stop_iteration=2", "--eval_every=2", "--save_every=2"])
    [checkpoint] = tmp_path.glob("checkpoints/**/2_iterations.pth")
    output = tmp_path / "backbone" / "MobileNetV2_tones.pth"
    main.main(["export", f"--checkpoint_path={checkpoint}", f"--output={output}"])
    exported = load_checkpoint_file(str(output))
    assert set(exported) == {"model", "iteration"} and exported["iteration"] == 2
    found = identify_checkpoint(str(output))
    assert (found.name, found.classes_num) == ("MobileNetV2", 3)
    described = json.loads((tmp_path / "backbone" / "MobileNetV2_tones.json").read_text())
    assert described["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert described["source_labels"] == ["low", "high", "noise"]
    assert described["training_run"]["model_type"] == "Transfer_MobileNetV2"
    assert set(described["source_metrics"]) == {"mAP", "macro_f1", "accuracy", "selection", "clips"}

    # the plain tagger with 3 outputs, loaded from the file, gives the run's probabilities
    tagger = TAGGERS["MobileNetV2"](**found.audio, classes_num=3).eval()
    tagger.load_state_dict(exported["model"])
    trained, _, _ = load_trained_model(str(checkpoint), torch.device("cpu"))
    waveform = torch.from_numpy(tone(440, 1.0, 32000)[None].astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(tagger(waveform)["clipwise_output"],
                              trained(waveform)["clipwise_output"], atol=1e-6)

    # not an AudioSet tagger: tagging AudioSet labels with it is refused in one line
    sf.write(tmp_path / "tone.wav", tone(440, 1.0, 32000).astype(np.float32), 32000)
    result = run_script("pytorch/main.py", "inference", f"--checkpoint_path={output}",
                        f"--audio_path={tmp_path / 'tone.wav'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "an output layer of 3 labels, not AudioSet's 527" in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the recipe three times, each with its own interpreter start-ups
def test_the_recipe_makes_the_same_backbone_twice(tmp_path):
    """scripts/pretrain_backbone.sh shortened (96 clips, 6 iterations): the same seeds give the
    same source-task mAP, the same data and the same file in two fresh workspaces."""
    environment = dict(os.environ, PYTHON=sys.executable, CLIPS="96", ITERATIONS="6")
    cards = []
    for name in ("first", "second"):
        output = tmp_path / name / "MobileNetV2_short.pth"
        result = subprocess.run(["bash", "scripts/pretrain_backbone.sh", str(tmp_path / name / "ws"),
                                 str(output)], cwd=REPO_DIR, env=environment, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        cards.append(json.loads(output.with_suffix(".json").read_text()))
        assert identify_checkpoint(str(output)).name == "MobileNetV2"
    assert cards[0]["source_metrics"]["mAP"] == pytest.approx(cards[1]["source_metrics"]["mAP"], abs=0.02)
    assert cards[0]["training_run"]["data_digest"] == cards[1]["training_run"]["data_digest"]
    # Seeded end to end: the same bytes from two fresh workspaces.
    assert cards[0]["sha256"] == cards[1]["sha256"]
