"""PANNs models: published state_dict layout, checkpoint loading, outputs, mixup, frozen base."""
import numpy as np
import pytest
import torch

from pytorch.models import MODELS, Cnn6, Cnn14, Transfer_Cnn6, create_model
from utils.utilities import UsageError

AUDIO = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
             fmax=14000)
BATCH = 4
SAMPLES = 32000  # 1 s


def bn_entries(prefix, channels):
    return [(f"{prefix}.weight", (channels,)), (f"{prefix}.bias", (channels,)),
            (f"{prefix}.running_mean", (channels,)), (f"{prefix}.running_var", (channels,)),
            (f"{prefix}.num_batches_tracked", ())]


def front_end_entries():
    # torchlibrosa: n_fft=1024 -> 513 frequency bins; 64 mel bands.
    return ([("spectrogram_extractor.stft.conv_real.weight", (513, 1, 1024)),
             ("spectrogram_extractor.stft.conv_imag.weight", (513, 1, 1024)),
             ("logmel_extractor.melW", (513, 64))]
            + bn_entries("bn0", 64))


def published_cnn14_entries():
    """Key names and shapes of the official Cnn14_mAP=0.431.pth, in published order."""
    entries = front_end_entries()
    channels = [1, 64, 128, 256, 512, 1024, 2048]
    for i in range(1, 7):
        c_in, c_out = channels[i - 1], channels[i]
        entries += [(f"conv_block{i}.conv1.weight", (c_out, c_in, 3, 3)),
                    (f"conv_block{i}.conv2.weight", (c_out, c_out, 3, 3))]
        entries += bn_entries(f"conv_block{i}.bn1", c_out) + bn_entries(f"conv_block{i}.bn2", c_out)
    entries += [("fc1.weight", (2048, 2048)), ("fc1.bias", (2048,)),
                ("fc_audioset.weight", (527, 2048)), ("fc_audioset.bias", (527,))]
    return entries


def published_cnn6_entries():
    """Key names and shapes of the official Cnn6_mAP=0.343.pth, in published order."""
    entries = front_end_entries()
    channels = [1, 64, 128, 256, 512]
    for i in range(1, 5):
        c_in, c_out = channels[i - 1], channels[i]
        entries += [(f"conv_block{i}.conv1.weight", (c_out, c_in, 5, 5))]
        entries += bn_entries(f"conv_block{i}.bn1", c_out)
    entries += [("fc1.weight", (512, 512)), ("fc1.bias", (512,)),
                ("fc_audioset.weight", (527, 512)), ("fc_audioset.bias", (527,))]
    return entries


def state_entries(module):
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]


@pytest.fixture(scope="module")
def cnn14():
    torch.manual_seed(0)
    return Cnn14(**AUDIO, classes_num=527)


@pytest.fixture
def waveform():
    torch.manual_seed(1)
    return 0.1 * torch.randn(BATCH, SAMPLES)


def test_cnn14_state_dict_matches_published_layout(cnn14):
    assert state_entries(cnn14) == published_cnn14_entries()


def test_cnn6_state_dict_matches_published_layout():
    assert state_entries(Cnn6(**AUDIO)) == published_cnn6_entries()


@pytest.mark.slow
def test_official_format_checkpoint_loads_into_transfer_base(cnn14, tmp_path):
    # Make the saved weights distinguishable from a fresh initialisation, BN statistics too.
    with torch.no_grad():
        for value in cnn14.state_dict().values():
            if value.is_floating_point():
                value.add_(0.01)
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save({"model": cnn14.state_dict(), "iteration": 0}, path)

    model = create_model("Transfer_Cnn14", **AUDIO, classes_num=10,
                         pretrained_checkpoint_path=str(path))
    loaded = model.base.state_dict()
    for key, value in cnn14.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_bare_state_dict_loads_into_plain_model(tmp_path):
    source = Cnn6(**AUDIO)
    path = tmp_path / "bare.pth"
    torch.save(source.state_dict(), path)
    model = create_model("Cnn6", **AUDIO, classes_num=527, pretrained_checkpoint_path=str(path))
    assert torch.equal(model.fc1.weight, source.fc1.weight)


def test_mismatching_checkpoint_names_renamed_key_and_shape(tmp_path):
    state = Cnn6(**AUDIO).state_dict()
    state["fc_one.weight"] = state.pop("fc1.weight")
    state["fc_audioset.weight"] = torch.zeros(300, 512)
    path = tmp_path / "broken.pth"
    torch.save({"model": state}, path)

    with pytest.raises(UsageError) as error:
        create_model("Transfer_Cnn6", **AUDIO, classes_num=10, pretrained_checkpoint_path=str(path))
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    assert "missing keys: fc1.weight" in message
    assert "unexpected keys: fc_one.weight" in message
    assert "fc_audioset.weight: checkpoint (300, 512) vs model (527, 512)" in message


def test_non_checkpoint_file_is_a_usage_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(UsageError, match="notes.pth"):
        create_model("Transfer_Cnn6", **AUDIO, classes_num=10, pretrained_checkpoint_path=str(path))
    with pytest.raises(UsageError, match="missing.pth"):
        create_model("Transfer_Cnn6", **AUDIO, classes_num=10,
                     pretrained_checkpoint_path=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("change, words", [
    (dict(fmax=20000), "fmax=20000 is above the Nyquist frequency 16000"),
    (dict(fmin=14000), "fmin=14000 is not below fmax=14000"),
    (dict(hop_size=2048), "hop_size=2048 is larger than window_size=1024"),
    (dict(mel_bins=8), "mel_bins=8"),
    (dict(classes_num=0), "classes_num=0"),
])
def test_bad_settings_are_rejected(change, words):
    settings = dict(AUDIO, classes_num=10)
    settings.update(change)
    with pytest.raises(UsageError, match=words):
        create_model("Transfer_Cnn6", **settings)


def test_registry_rejects_unknown_names_and_non_audioset_plain_models():
    with pytest.raises(UsageError, match="Cnn6, Cnn10, Cnn14, .*Transfer_ followed by"):
        create_model("Cnn15", **AUDIO, classes_num=10)
    with pytest.raises(UsageError, match="Transfer_Cnn6"):
        create_model("Cnn6", **AUDIO, classes_num=10)
    taggers = {name for name in MODELS if not name.startswith("Transfer_")}
    assert len(taggers) == 25 and set(MODELS) == taggers | {f"Transfer_{name}" for name in taggers}


def test_too_short_audio_is_a_usage_error():
    model = Cnn6(**AUDIO).eval()
    with pytest.raises(UsageError, match="too short"):
        model(torch.zeros(2, 1000))


def test_cnn14_output_shapes(cnn14, waveform):
    with torch.no_grad():
        output = cnn14.eval()(waveform)
    assert output["clipwise_output"].shape == (BATCH, 527)
    assert output["embedding"].shape == (BATCH, 2048)
    assert ((output["clipwise_output"] >= 0) & (output["clipwise_output"] <= 1)).all()


def test_single_label_outputs_are_log_probabilities(waveform):
    model = Transfer_Cnn6(**AUDIO, classes_num=10, freeze_base=False).eval()
    with torch.no_grad():
        output = model(waveform)
    assert output["clipwise_output"].shape == (BATCH, 10)
    assert output["embedding"].shape == (BATCH, 512)
    assert torch.allclose(output["clipwise_output"].exp().sum(dim=1), torch.ones(BATCH),
                          atol=1e-5)


def test_multi_label_outputs_are_probabilities(waveform):
    model = Transfer_Cnn6(**AUDIO, classes_num=7, freeze_base=False, task="multi_label").eval()
    with torch.no_grad():
        probabilities = model(waveform)["clipwise_output"]
    assert probabilities.shape == (BATCH, 7)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert not torch.allclose(probabilities.sum(dim=1), torch.ones(BATCH))


def test_mixup_halves_the_batch_and_selects_pairs(waveform):
    model = Cnn6(**AUDIO).eval()  # deterministic: no dropout, no SpecAugment
    with torch.no_grad():
        first_of_pairs = model(waveform, torch.tensor([1., 0., 1., 0.]))["clipwise_output"]
        second_of_pairs = model(waveform, np.array([0., 1., 0., 1.]))["clipwise_output"]
        assert first_of_pairs.shape == (BATCH // 2, 527)
        assert torch.allclose(first_of_pairs, model(waveform[0::2])["clipwise_output"], atol=1e-5)
        assert torch.allclose(second_of_pairs, model(waveform[1::2])["clipwise_output"], atol=1e-5)
        with pytest.raises(ValueError, match="even batch"):
            model(waveform[:3], np.ones(3))


def test_frozen_base_stays_fixed_while_head_learns(waveform):
    torch.manual_seed(0)
    model = Transfer_Cnn6(**AUDIO, classes_num=10, freeze_base=True)
    model.train()
    assert not model.base.training and model.fc_transfer.training
    assert model.base.spec_augmenter.training  # documented choice: SpecAugment stays on
    base_before = {key: value.clone() for key, value in model.base.state_dict().items()}
    head_before = model.fc_transfer.weight.detach().clone()

    trainable = [param for param in model.parameters() if param.requires_grad]
    assert trainable == [model.fc_transfer.weight, model.fc_transfer.bias]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    targets = torch.tensor([1, 3])
    output = model(waveform, mixup_lambda=torch.tensor([0.7, 0.3, 0.4, 0.6]))
    assert output["clipwise_output"].shape == (BATCH // 2, 10)  # mixup works with a frozen base
    loss = torch.nn.functional.nll_loss(output["clipwise_output"], targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    for key, value in model.base.state_dict().items():
        assert torch.equal(value, base_before[key]), key  # weights and BN running_mean/var
    assert not torch.equal(model.fc_transfer.weight, head_before)


def test_frozen_base_applies_spec_augment_only_in_training(waveform):
    model = Transfer_Cnn6(**AUDIO, classes_num=10, freeze_base=True)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(waveform)["embedding"], model(waveform)["embedding"])
        model.eval()
        assert torch.equal(model(waveform)["embedding"], model(waveform)["embedding"])


def test_unfrozen_transfer_model_trains_its_base():
    model = Transfer_Cnn6(**AUDIO, classes_num=10, freeze_base=False).train()
    assert model.base.training
    assert model.base.fc1.weight.requires_grad


def test_front_end_runs_in_fp32_under_bf16_autocast(waveform):
    model = Cnn6(**AUDIO).eval()
    dtypes = {}
    model.bn0.register_forward_hook(  # bn0 reads the log-mel
        lambda module, inputs, output: dtypes.update(logmel=inputs[0].dtype))
    model.conv_block1.register_forward_hook(
        lambda module, inputs, output: dtypes.update(conv=output.dtype))
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        model(waveform.bfloat16())
    assert dtypes["logmel"] == torch.float32
    assert dtypes["conv"] == torch.bfloat16  # autocast is really active after the front end
