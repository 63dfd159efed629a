"""The HEAR module (pytorch/hear.py): the API's shapes and a regular timestamp grid for a
fine-tuned checkpoint, an official-format checkpoint and an .onnx export; scene embeddings equal
to what inference gives; hearvalidator itself accepts all three where it is installed."""
import importlib
import sys
import types

import numpy as np
import pytest
import torch

from helpers import SR, save_checkpoint, tone
from pytorch import hear
from pytorch.models import Cnn6
from pytorch.onnx_export import export_onnx
from pytorch.published import published_models
from pytorch.windows import predict_audio


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{kind: path}: a fine-tuned Transfer_Cnn6 (1-s clips), its .onnx export, and an official
    Cnn6 checkpoint in the published layout (random weights)."""
    folder = tmp_path_factory.mktemp("hear")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (3, SR)).astype(np.float32)
    fine_tuned = str(folder / "fine_tuned.pth")
    save_checkpoint(fine_tuned, ["a", "b", "c"], "single_label", noise)
    export_onnx(fine_tuned, str(folder / "fine_tuned.onnx"))
    torch.manual_seed(0)
    torch.save({"model": Cnn6(**published_models()["Cnn6"]["audio"]).state_dict()},
               folder / "Cnn6_official.pth")
    return {"fine_tuned": fine_tuned, "onnx": str(folder / "fine_tuned.onnx"),
            "official": str(folder / "Cnn6_official.pth")}


def changing_sound(seconds):
    """A low tone, then a high one: frames of the two halves must differ."""
    half = int(seconds * SR / 2)
    return np.concatenate([tone(200.0, half / SR, SR), tone(3000.0, half / SR, SR)])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fine_tuned", "official", "onnx"])
def test_the_api_gives_hears_shapes_on_a_regular_grid(models, kind):
    model = hear.load_model(models[kind])
    assert isinstance(model, torch.nn.Module) and model.to("cpu") is model
    assert model.sample_rate == SR and model.scene_embedding_size == model.embedding_size
    for seconds in (1.07, 1.98, 4.0):
        audio = torch.from_numpy(np.stack([changing_sound(seconds),
                                           0.1 * tone(440.0, seconds, SR)]).astype(np.float32))
        embeddings, stamps = hear.get_timestamp_embeddings(audio, model)
        assert embeddings.dtype == stamps.dtype == torch.float32
        assert embeddings.shape == (2, stamps.shape[1], model.timestamp_embedding_size)
        step = np.diff(stamps.numpy(), axis=1)
        assert np.allclose(step, model.segment_samples * 1000 / SR)  # one regular grid
        assert torch.equal(stamps[0], stamps[1]) and 0 < stamps[0, 0] <= step[0, 0]
        assert stamps.max() <= 1000 * seconds
        early, late = embeddings[0, 0], embeddings[0, -1]  # the low half, the high half
        assert not torch.allclose(early, late, atol=1e-4)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (2, model.scene_embedding_size) and scene.dtype == torch.float32


def test_scene_embeddings_are_what_inference_gives_and_onnx_agrees(models):
    sounds = [changing_sound(2.5), 0.2 * tone(880.0, 0.6, SR)]  # three windows; one padded
    audio = np.zeros((2, len(sounds[0])), np.float32)
    audio[0] = sounds[0]
    torch_model, onnx_model = hear.load_model(models["fine_tuned"]), hear.load_model(models["onnx"])
    scene = hear.get_scene_embeddings(torch.from_numpy(audio), torch_model).numpy()
    expected = predict_audio(torch_model.predictor, [audio[0]])["embedding"]
    np.testing.assert_allclose(scene[0], expected, atol=1e-5)
    np.testing.assert_allclose(hear.get_scene_embeddings(audio, onnx_model).numpy(), scene,
                               rtol=1e-4, atol=1e-4)
    # the grid of an .onnx model is the one its checkpoint gives
    _, torch_stamps = hear.get_timestamp_embeddings(torch.from_numpy(audio), torch_model)
    _, onnx_stamps = hear.get_timestamp_embeddings(torch.from_numpy(audio), onnx_model)
    assert torch.equal(torch_stamps, onnx_stamps)


def test_a_model_moved_to_another_device_is_used_there(models):
    """The network is a submodule: .to() moves it and the calls follow (CPU to CPU here, the
    same code path as to CUDA), without reloading."""
    model = hear.load_model(models["fine_tuned"])
    model.to(torch.float64).to(torch.float32)  # a move rebuilds the parameters in place
    assert model.device == torch.device("cpu") and next(model.parameters()).dtype == torch.float32
    if torch.cuda.is_available():
        model.to("cuda")
        audio = torch.from_numpy(changing_sound(2.0).astype(np.float32))[None].cuda()
        embeddings, stamps = hear.get_timestamp_embeddings(audio, model)
        assert embeddings.device.type == stamps.device.type == "cuda"


def test_load_model_without_a_path_says_what_it_needs():
    with pytest.raises(ValueError, match="needs the path of a checkpoint"):
        hear.load_model()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fine_tuned", "official", "onnx"])
def test_hearvalidator_accepts_the_module(models, kind, monkeypatch, capsys):
    """hearvalidator 2021.0.6 (pip install --no-deps --ignore-requires-python: scripts/run_tests.sh
    does) imports TensorFlow at the top but uses it for TensorFlow models only; where TF is
    absent a stand-in module takes the import, and every check on a torch module is the
    validator's own."""
    validate = pytest.importorskip("hearvalidator.validate") if importlib.util.find_spec(
        "tensorflow") else None
    if validate is None:
        if importlib.util.find_spec("hearvalidator") is None:
            pytest.skip("hearvalidator is not installed")
        stand_in = types.ModuleType("tensorflow")
        stand_in.Module = type("Module", (), {})  # nothing here is a TensorFlow module
        monkeypatch.setitem(sys.modules, "tensorflow", stand_in)
        monkeypatch.delitem(sys.modules, "hearvalidator.validate", raising=False)
        validate = importlib.import_module("hearvalidator.validate")
    validate.ValidateModel("pytorch.hear", models[kind], device="cpu")()
    printed = capsys.readouterr().out
    assert "Checking get_scene_embeddings" in printed and "Received embedding of shape" in printed
