"""The fast front end equals torchlibrosa's: log-mel by torch.stft, SpecAugment on the device."""
import numpy as np
import pytest
import torch
from torchlibrosa.augmentation import DropStripes

from pytorch.front_end import (SpecAugment, drop_stripes, logmel, mel_power_by_matmuls,
                               power_spectrogram, stft_window)
from pytorch.models import create_model

# The published settings of the 32, 16 and 8 kHz PANNs.
SETTINGS = [dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000),
            dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000),
            dict(sample_rate=8000, window_size=256, hop_size=80, mel_bins=64, fmin=50, fmax=4000)]


def example_waveforms(sample_rate, seconds=2.0):
    """Noise, a chord with a decaying envelope, and a mostly silent clip."""
    generator = torch.Generator().manual_seed(0)
    samples = int(sample_rate * seconds)
    t = torch.arange(samples) / sample_rate
    chord = sum(torch.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * torch.exp(-t) / 3
    quiet = torch.zeros(samples)
    quiet[100:samples // 4] = 0.01 * torch.randn(samples // 4 - 100, generator=generator)
    return torch.stack([0.3 * torch.randn(samples, generator=generator), chord, quiet])


def torchlibrosa_logmel(model, waveform):
    return model.logmel_extractor(model.spectrogram_extractor(waveform))


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s['sample_rate']}Hz")
def test_log_mel_equals_torchlibrosa(settings):
    """Tolerance: 5e-3 dB in every bin within 80 dB of its clip's loudest one. Further down,
    both the conv and the FFT are at fp32 rounding of a power ~1e-8 of the peak (each differs
    from a float64 reference by ~0.05 dB there), so those bins are compared at 0.5 dB."""
    model = create_model("Cnn14", **settings, classes_num=527)
    waveform = example_waveforms(settings["sample_rate"])
    with torch.no_grad():
        reference = torchlibrosa_logmel(model, waveform)
        fast = model.logmel(waveform)
    assert fast.shape == reference.shape == (3, 1, 1 + waveform.shape[1] // settings["hop_size"], 64)
    loud = reference > reference.amax(dim=(1, 2, 3), keepdim=True) - 80
    difference = (fast - reference).abs()
    assert difference[loud].max() < 5e-3 and loud.float().mean() > 0.5
    assert difference.max() < 0.5

    short = waveform[:, :settings["window_size"] // 2 + 1]  # the shortest reflect-padded input
    with torch.no_grad():
        torch.testing.assert_close(model.logmel(short), torchlibrosa_logmel(model, short),
                                   rtol=0, atol=2e-3)


@pytest.mark.parametrize("n_fft,hop,samples", [(1024, 320, 64000), (512, 160, 32017),
                                               (256, 80, 16000), (400, 160, 9999),
                                               (97, 200, 1000), (1024, 320, 513)])
def test_the_exports_mel_power_by_matmuls_equals_torch_stft(n_fft, hop, samples):
    """The ONNX graph's front end (one Cooley-Tukey step as matrix products) against torch.stft:
    the published window/hop pairs, an n_fft of two equal factors (400 = 20 x 20), a prime one
    (97: a plain DFT), a hop longer than the window, an odd length and the shortest input."""
    waveform = example_waveforms(16000, samples / 16000)
    window = stft_window(n_fft)
    mel_matrix = torch.rand(n_fft // 2 + 1, 64, generator=torch.Generator().manual_seed(1))
    reference = torch.matmul(power_spectrogram(waveform, window, hop).transpose(1, 2), mel_matrix)
    found = mel_power_by_matmuls(waveform, window, hop, mel_matrix)
    assert found.shape == reference.shape and found.shape[1] >= 2
    peak = reference.amax(dim=(1, 2), keepdim=True)
    assert ((found - reference).abs() / peak).max() < 1e-5
    silent = reference == 0  # the quiet clip's silent tail: zero power, -100 dB, in both
    assert torch.all(found[silent] == 0) and (samples < 4 * n_fft or silent.any())


@pytest.mark.slow
def test_official_state_dict_is_unchanged_and_loads_strictly(tmp_path):
    model = create_model("Cnn14", **SETTINGS[0], classes_num=527)
    keys = list(model.state_dict())
    assert "stft_window" not in keys  # the window is not part of the published state
    assert keys[:3] == ["spectrogram_extractor.stft.conv_real.weight",
                        "spectrogram_extractor.stft.conv_imag.weight", "logmel_extractor.melW"]
    path = tmp_path / "Cnn14.pth"
    torch.save({"model": model.state_dict()}, path)
    loaded = create_model("Cnn14", **SETTINGS[0], classes_num=527, pretrained_checkpoint_path=str(path))
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_the_checkpoints_mel_matrix_is_the_one_used():
    model = create_model("Cnn6", **SETTINGS[0], classes_num=527)
    waveform = example_waveforms(32000)[:1]
    with torch.no_grad():
        model.logmel_extractor.melW.mul_(2.0)  # as loading another filterbank would
        doubled = model.logmel(waveform)
        torch.testing.assert_close(doubled, torchlibrosa_logmel(model, waveform), rtol=0, atol=2e-3)


def stripe_statistics(augment, trials=400, frames=300, bins=64):
    """Per trial: dropped frames (all bins zero) and dropped bins (all frames zero) of one example."""
    ones = torch.ones(trials, 1, frames, bins)
    out = augment(ones)
    dropped_frames = (out == 0).all(dim=3).sum(dim=2).flatten().float()
    dropped_bins = (out == 0).all(dim=2).sum(dim=2).flatten().float()
    return dropped_frames, dropped_bins


def test_spec_augment_stripes_match_torchlibrosa_statistics():
    """Same per-example distribution as torchlibrosa's DropStripes: widths in 0..width-1 and
    starts in 0..size-width-1, two stripes per axis (means and spreads within sampling error)."""
    torch.manual_seed(0)
    ours = SpecAugment()
    theirs_time = DropStripes(dim=2, drop_width=64, stripes_num=2)
    theirs_freq = DropStripes(dim=3, drop_width=8, stripes_num=2)
    ours.train(), theirs_time.train(), theirs_freq.train()
    our_frames, our_bins = stripe_statistics(ours)
    their_frames, their_bins = stripe_statistics(lambda x: theirs_freq(theirs_time(x)))
    for mine, theirs, tolerance in ((our_frames, their_frames, 4.0), (our_bins, their_bins, 0.6)):
        assert abs(mine.mean() - theirs.mean()) < tolerance, (mine.mean(), theirs.mean())
        assert abs(mine.std() - theirs.std()) < tolerance
        assert mine.max() <= theirs.max() + 1 and mine.min() >= 0
    assert our_frames.max() <= 2 * 63 and our_bins.max() <= 2 * 7  # never wider than allowed


def test_spec_augment_is_seeded_off_in_eval_and_fits_short_inputs():
    augment = SpecAugment()
    x = torch.randn(4, 1, 100, 64)
    torch.manual_seed(3)
    first = augment(x)
    torch.manual_seed(3)
    assert torch.equal(augment(x), first) and not torch.equal(first, x)
    assert torch.equal(augment.eval()(x), x)
    short = torch.ones(2, 1, 10, 64)  # shorter than a time stripe: clamped, never an error
    assert drop_stripes(short, 2, 64, 2).shape == short.shape


def test_short_clips_train_with_spec_augment():
    model = create_model("Transfer_Cnn6", **SETTINGS[0], classes_num=3)
    model.train()
    output = model(torch.randn(2, 16 * 320))["clipwise_output"]  # 17 frames < 64-frame stripes
    assert output.shape == (2, 3) and torch.isfinite(output).all()


def test_front_end_window_follows_the_model_to_its_device_and_stays_fp32():
    model = create_model("Cnn6", **SETTINGS[0], classes_num=527)
    assert model.stft_window.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.logmel(torch.randn(1, 32000)).dtype == torch.float32
    assert torch.equal(stft_window(1024), model.stft_window)
    assert logmel(torch.randn(1, 32000), model.stft_window, 320,
                  model.logmel_extractor.melW).shape == (1, 1, 101, 64)
