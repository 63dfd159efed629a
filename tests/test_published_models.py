"""Every published PANNs architecture: its layout against the published list, found from an
official-format checkpoint whose file name says nothing, and tagging with it through
`main.py inference`. metadata/panns_models.json was recorded from the reference code (see its
'source'); the outputs were also compared with the reference code's outside this project."""
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import run_script
from pytorch import main
from pytorch.checkpoints import load_checkpoint_file
from pytorch.models import TAGGERS, create_model
from pytorch.published import identify, identify_checkpoint, published_models
from utils.utilities import UsageError

MODELS = published_models()
SAME_TENSORS_AS_CNN14 = {"Cnn14_DecisionLevelMax", "Cnn14_DecisionLevelAvg"}


def build(name, seed=0):
    torch.manual_seed(seed)
    model = TAGGERS[name](**MODELS[name]["audio"]).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that loading them matters
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def test_every_published_model_is_here():
    assert list(MODELS) == list(TAGGERS)
    assert len(MODELS) == 25


def quick_tier(*names):
    """Every published model for the full suite; the quick tier takes `names` only."""
    return [name if name in names else pytest.param(name, marks=pytest.mark.slow)
            for name in MODELS]


@pytest.mark.parametrize("name", quick_tier("Cnn6", "MobileNetV1"))
def test_found_from_its_checkpoint_and_tags_audio(name, tmp_path, capsys):
    model = build(name)
    published = MODELS[name]
    layout = [f"{key} {'x'.join(map(str, value.shape))}" for key, value in model.state_dict().items()]
    assert layout == published["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == published["parameters"]

    # The official format under a file name that says nothing, except where only the name can
    # tell (these hold exactly Cnn14's tensors): there the published file name.
    file_name = published["checkpoint"] if name in SAME_TENSORS_AS_CNN14 else "weights.pth"
    checkpoint = tmp_path / (file_name or f"{name}.pth")
    torch.save({"model": model.state_dict(), "iteration": 0}, checkpoint)
    sample_rate = published["audio"]["sample_rate"]
    waveform = np.clip(0.2 * np.random.default_rng(0).standard_normal(sample_rate), -1, 1)
    waveform = waveform.astype(np.float32)  # inference clips to full scale, as packing does
    sf.write(tmp_path / "clip.wav", waveform, sample_rate, subtype="FLOAT")

    output = tmp_path / "tags.json"
    main.main(["inference", f"--checkpoint_path={checkpoint}", f"--audio_path={tmp_path}/clip.wav",
               f"--output={output}"])
    tagged = json.loads(output.read_text())
    assert tagged["model_type"] == name
    with torch.no_grad():
        own = model(torch.from_numpy(waveform[None]))
    probabilities = np.array(list(tagged["files"][0]["probabilities"].values()))
    assert len(probabilities) == 527
    np.testing.assert_allclose(probabilities, own["clipwise_output"][0].numpy(), rtol=1e-5,
                               atol=1e-6)
    if "framewise_output" in own:  # sound event detection: one row per STFT frame
        rows = (tmp_path / "tags_framewise" / "clip.csv").read_text().splitlines()
        assert len(rows) == 1 + own["framewise_output"].shape[1]
        assert (tmp_path / "tags_framewise" / "clip.png").stat().st_size > 0


@pytest.mark.parametrize("name", quick_tier("Cnn14", "LeeNet11", "Res1dNet31", "MobileNetV2"))
def test_shortest_input(name):
    """min_samples is what the network's pooling takes: it runs there, fails one sample less."""
    model = build(name)
    shortest = model.min_samples()
    with torch.no_grad():
        model(torch.zeros(1, shortest))
        with pytest.raises(UsageError, match="too short"):
            model(torch.zeros(1, shortest - 1))
        if shortest > model.window_size // 2 + 1:  # below it, only reflect padding refuses
            with pytest.raises(RuntimeError):
                model.clip_head(model.feature_map(torch.zeros(1, shortest - 1), None))


def test_same_tensors_without_a_name_give_cnn14_with_a_warning(caplog):
    state_dict = build("Cnn14_DecisionLevelMax").state_dict()
    with caplog.at_level(logging.WARNING):
        found = identify(state_dict, "/models/downloaded.pth")
    assert found.name == "Cnn14" and "--model_type" in caplog.text
    assert identify(state_dict, "/m/Cnn14_DecisionLevelAvg_mAP=0.0.pth").name == \
        "Cnn14_DecisionLevelAvg"


@pytest.mark.slow
def test_sample_rate_and_band_come_from_the_mel_matrix():
    """Cnn14 and Cnn14_16k differ in their STFT and mel shapes; a 16 kHz Cnn14 with another
    band is refused rather than guessed."""
    found = identify(build("Cnn14_16k").state_dict(), "/m/x.pth")
    assert found.audio == dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64,
                               fmin=50, fmax=8000)
    odd_band = TAGGERS["Cnn14"](sample_rate=16000, window_size=512, hop_size=160, mel_bins=64,
                                fmin=0, fmax=6000).state_dict()
    with pytest.raises(UsageError, match="matches no published sample rate and band"):
        identify(odd_band, "/m/x.pth")


def test_a_foreign_checkpoint_names_the_closest_model(tmp_path):
    state_dict = build("Cnn6").state_dict()
    state_dict["extra.weight"] = torch.zeros(3)
    del state_dict["fc1.bias"]
    torch.save({"model": state_dict}, tmp_path / "w.pth")
    with pytest.raises(UsageError, match=r"closest: Cnn6: the file has extra.weight 3; "
                                         r"Cnn6 has fc1.bias 512"):
        identify_checkpoint(str(tmp_path / "w.pth"))


def test_transfer_model_on_any_base_loads_the_checkpoint(tmp_path):
    base = build("MobileNetV2")
    torch.save({"model": base.state_dict()}, tmp_path / "w.pth")
    model = create_model("Transfer_MobileNetV2", **MODELS["MobileNetV2"]["audio"], classes_num=3,
                         pretrained_checkpoint_path=str(tmp_path / "w.pth"))
    for key, value in base.state_dict().items():
        assert torch.equal(model.base.state_dict()[key], value)
    assert model.fc_transfer.in_features == 1024


def test_the_checkpoint_alone_sets_up_training_evaluation_and_inference(tmp_path, features):
    """--pretrained_checkpoint_path=X.pth with no --model_type and no audio flags: the run is
    Transfer_<what X holds> with X's settings, and later steps read them from the checkpoint."""
    torch.save({"model": build("LeeNet11").state_dict()}, tmp_path / "weights.pth")
    main.main(["train", f"--workspace={tmp_path}", f"--features={features}",
               f"--pretrained_checkpoint_path={tmp_path}/weights.pth", "--batch_size=4",
               "--num_workers=0", "--stop_iteration=2", "--eval_every=2", "--save_every=2"])
    [checkpoint] = list(tmp_path.glob("checkpoints/main/holdout_fold=1/Transfer_LeeNet11/**/2_iterations.pth"))
    saved = load_checkpoint_file(str(checkpoint))
    assert saved["config"]["model_type"] == "Transfer_LeeNet11"
    assert {key: saved["config"]["audio"][key] for key in MODELS["LeeNet11"]["audio"]} == \
        MODELS["LeeNet11"]["audio"]
    main.main(["evaluate", f"--checkpoint_path={checkpoint}", f"--features={features}",
               "--holdout_fold=1"])
    sf.write(tmp_path / "tone.wav", np.sin(np.arange(48000) / 5.0).astype(np.float32), 32000)
    output = tmp_path / "labels.json"
    main.main(["inference", f"--checkpoint_path={checkpoint}", f"--audio_path={tmp_path}/tone.wav",
               f"--output={output}"])
    labelled = json.loads(output.read_text())
    assert labelled["model_type"] == "Transfer_LeeNet11" and labelled["labels"] == ["high", "low", "mid"]
    assert labelled["files"][0]["windows"] == 2  # 1.5 s in 1-s training windows: 0-1 s, 0.5-1.5 s


@pytest.mark.slow
def test_a_16k_checkpoint_with_32k_data_says_to_repack(tmp_path, features):
    torch.save({"model": build("Cnn14_16k").state_dict()}, tmp_path / "model.pth")
    result = run_script("pytorch/main.py", "train", f"--workspace={tmp_path}",
                        f"--features={features}", f"--pretrained_checkpoint_path={tmp_path}/model.pth")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "Cnn14_16k was trained on 16000 Hz audio" in message
    assert "holds 32000 Hz" in message and "--sample_rate=16000" in message


def test_model_type_settles_models_with_the_same_tensors(tmp_path, capsys):
    """A Cnn14-tensor file under a name that says nothing: --model_type chooses the decision-level
    model (frame-wise output), and a model whose tensors differ is refused in one line."""
    state_dict = build("Cnn14_DecisionLevelMax").state_dict()
    identified = identify(state_dict, "weights.pth", model_type="Cnn14_DecisionLevelMax")
    assert identified.name == "Cnn14_DecisionLevelMax"
    assert identify(state_dict, "weights.pth").name == "Cnn14"  # the default, with a warning
    with pytest.raises(UsageError, match="--model_type=Cnn6: weights.pth holds the tensors of Cnn14"):
        identify(state_dict, "weights.pth", model_type="Cnn6")
