"""ONNX export: onnxruntime gives PyTorch's probabilities and embeddings (a fine-tuned
Transfer_Cnn14 and an official-format Cnn14 tagger, random weights, three input lengths), the
metadata carries the run, inference runs an .onnx as its checkpoint, bad files are one line."""
import json
import os

import numpy as np
import onnx
import pytest
import soundfile
import torch

from helpers import run_dir
from pytorch.main import main
from pytorch.models import create_model
from pytorch.onnx_export import PARITY_TOLERANCE, export_onnx
from pytorch.onnx_metadata import SPEED_KEY
from pytorch.predictor import OnnxPredictor, load_predictor
from utils.config import AudioConfig, RunConfig
from utils.utilities import UsageError

LABELS = ["blues", "classical", "jazz", "rock"]
SR = 32000


def transfer_cnn14_checkpoint(path, task="multi_label"):
    """A fine-tuned-format Transfer_Cnn14 on 2-s clips, BatchNorm statistics made non-trivial."""
    torch.manual_seed(0)
    audio = AudioConfig(clip_samples=2 * SR)
    model = create_model("Transfer_Cnn14", **audio.front_end(), classes_num=len(LABELS), task=task)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.fc_transfer.weight.data.normal_(0, 1.0)  # outputs that differ between inputs
    run = RunConfig(model_type="Transfer_Cnn14", task=task, labels=LABELS, audio=audio,
                    features="", holdout_fold=1, loss_type="clip_bce")
    torch.save({"iteration": 3, "model": model.state_dict(), "config": run.to_dict(),
                "thresholds": [0.3, 0.4, 0.5, 0.6]}, path)
    return path


def official_tagger_checkpoint(path):
    torch.manual_seed(1)
    model = create_model("Cnn14", **AudioConfig().front_end(), classes_num=527)
    model.fc_audioset.weight.data.normal_(0, 1.0)  # outputs that differ between inputs
    model.fc_audioset.bias.data[::2] = -25.0  # and unlikely labels, as AudioSet's rare ones
    torch.save({"model": model.state_dict()}, path)  # the published files' layout
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    pairs = {}
    for name, make in (("transfer", transfer_cnn14_checkpoint),
                       ("tagger", official_tagger_checkpoint)):
        checkpoint = make(str(folder / f"{name}.pth"))
        output = str(folder / f"{name}.onnx")
        main(["export", f"--checkpoint_path={checkpoint}", f"--output={output}"])
        pairs[name] = (checkpoint, output)
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transfer", "tagger"])
def test_onnxruntime_equals_pytorch_at_three_lengths(exported, name):
    checkpoint, output = exported[name]
    reference, onnx_model = load_predictor(checkpoint), OnnxPredictor(output)
    rng = np.random.default_rng(5)
    for seconds in (1.3, 2.0, 10.7):  # shorter than, equal to and longer than the export's clip
        t = np.arange(int(seconds * SR)) / SR
        waveforms = np.stack([0.02 * rng.standard_normal(len(t)), 0.5 * np.sin(2 * np.pi * 220 * t),
                              0.3 * np.sin(2 * np.pi * 3000 * t) + 0.1 * rng.standard_normal(len(t))
                              ]).astype(np.float32)
        expected, got = reference(waveforms), onnx_model(waveforms)
        assert got["probabilities"].shape == expected["probabilities"].shape
        assert np.abs(got["probabilities"] - expected["probabilities"]).max() <= PARITY_TOLERANCE
        np.testing.assert_allclose(got["embedding"], expected["embedding"], rtol=1e-4, atol=1e-4)
        assert expected["probabilities"].std(axis=0).max() > 1e-4  # inputs that differ do
        # Unlikely labels too, relatively (onnxruntime's Sigmoid op gave 0 below a logit of
        # -18 and 10% errors near 1e-6): rankings of rare labels survive the export.
        rare = (expected["probabilities"] > 1e-30) & (expected["probabilities"] < 1e-6)
        if name == "tagger":
            assert rare.sum() > 100
        np.testing.assert_allclose(got["probabilities"][rare], expected["probabilities"][rare],
                                   rtol=1e-3)


@pytest.mark.slow
def test_the_metadata_carries_labels_rate_clip_and_thresholds(exported):
    _, output = exported["transfer"]
    props = {p.key: json.loads(p.value) for p in onnx.load(output).metadata_props}
    assert props["labels"] == LABELS and props["sample_rate"] == SR
    assert props["clip_samples"] == 2 * SR and props["task"] == "multi_label"
    assert props["thresholds"] == [0.3, 0.4, 0.5, 0.6]
    predictor = OnnxPredictor(output)
    assert predictor.run == load_predictor(exported["transfer"][0]).run
    np.testing.assert_array_equal(predictor.thresholds, [0.3, 0.4, 0.5, 0.6])


@pytest.mark.slow
def test_inference_of_an_onnx_file_writes_what_its_checkpoint_gives(exported, tmp_path):
    checkpoint, output = exported["transfer"]
    rng = np.random.default_rng(0)
    soundfile.write(tmp_path / "a.wav", (0.3 * rng.standard_normal(5 * SR)).astype(np.float32), SR)
    results = {}
    for name, path in (("torch", checkpoint), ("onnx", output)):
        target = str(tmp_path / f"{name}.json")
        main(["inference", f"--checkpoint_path={path}", f"--audio_path={tmp_path / 'a.wav'}",
              f"--output={target}"])
        with open(target) as f:
            results[name] = json.load(f)
    torch_file, onnx_file = results["torch"]["files"][0], results["onnx"]["files"][0]
    assert onnx_file["windows"] == torch_file["windows"] == 3
    assert onnx_file["predicted"] == torch_file["predicted"]
    for label in LABELS:
        assert onnx_file["probabilities"][label] == pytest.approx(
            torch_file["probabilities"][label], abs=1e-5)


def test_export_of_a_small_model_checks_itself_and_writes_atomically(tmp_path):
    from helpers import save_checkpoint
    checkpoint = str(tmp_path / "cnn6.pth")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (2, SR)).astype(np.float32)
    save_checkpoint(checkpoint, ["a", "b"], "single_label", noise)
    difference, speed, run = export_onnx(checkpoint, str(tmp_path / "m.onnx"))
    assert difference <= PARITY_TOLERANCE and run.labels == ["a", "b"]
    props = onnx.load(str(tmp_path / "m.onnx")).metadata_props
    assert speed > 0 and json.loads(next(p.value for p in props if p.key == SPEED_KEY)) == round(
        speed, 3)  # measured on this CPU, for --runtime=auto
    assert sorted(os.listdir(tmp_path)) == ["cnn6.pth", "m.onnx"]  # no temporary left
    probabilities = OnnxPredictor(str(tmp_path / "m.onnx"))(np.zeros((1, SR)))["probabilities"]
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)  # softmax, not log-softmax


@pytest.mark.parametrize("case", ["not_onnx", "no_metadata", "unwritable", "not_a_checkpoint"])
def test_bad_files_are_one_line_errors(tmp_path, case):
    if case == "not_onnx":
        path = tmp_path / "model.onnx"
        path.write_bytes(b"PK\x03\x04 this is a zip, not a protobuf")
        soundfile.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
        with pytest.raises(UsageError, match=r"model.onnx: not an ONNX model"):
            main(["inference", f"--checkpoint_path={path}", f"--audio_path={tmp_path}"])
    elif case == "no_metadata":
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        path = str(tmp_path / "other.onnx")
        onnx.save(onnx.helper.make_model(graph), path)
        with pytest.raises(UsageError, match="without this pipeline's metadata"):
            OnnxPredictor(path)
    elif case == "unwritable":
        (tmp_path / "folder.onnx").mkdir()
        with pytest.raises(UsageError, match=r"--output=.*folder.onnx"):
            main(["export", f"--checkpoint_path={tmp_path}/x.pth",
                  f"--output={tmp_path / 'folder.onnx'}"])
    else:  # a state dict without labels or config: nothing says what the outputs are
        path = str(tmp_path / "weights.pth")
        torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
        with pytest.raises(UsageError, match="weights.pth"):
            main(["export", f"--checkpoint_path={path}", f"--output={tmp_path / 'm.onnx'}"])


@pytest.fixture(scope="module")
def small_multi_label(tmp_path_factory):
    """An exported multi-label Transfer_Cnn6 (3 labels, 1-s clips) with tuned thresholds."""
    from helpers import save_checkpoint
    folder = tmp_path_factory.mktemp("tamper")
    checkpoint = str(folder / "cnn6.pth")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (3, SR)).astype(np.float32)
    save_checkpoint(checkpoint, ["a", "b", "c"], "multi_label", noise)
    saved = torch.load(checkpoint, weights_only=True)
    saved["thresholds"] = [0.3, 0.5, 0.6]
    torch.save(saved, checkpoint)
    export_onnx(checkpoint, str(folder / "m.onnx"))
    return str(folder / "m.onnx")


def tampered(source, path, **changes):
    """A copy of an exported file with metadata fields replaced (JSON text), as another tool or
    a damaged copy would leave them, written with the onnx package."""
    model = onnx.load(source)
    props = {entry.key: entry.value for entry in model.metadata_props}
    config = json.loads(props["run_config"])
    for key, value in changes.items():
        if key.startswith("run_config."):
            target, *parts = config, *key.split(".")[1:]
            for part in parts[:-1]:
                target = target[part]
            target[parts[-1]] = value
        else:
            props[key] = value
    props.setdefault("run_config", json.dumps(config))
    if any(key.startswith("run_config.") for key in changes):
        props["run_config"] = json.dumps(config)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("changes, words", [
    (dict(thresholds="[1.5, 0.5, 0.5]"), "field thresholds .* is not one number in \\(0, 1\\)"),
    (dict(thresholds="[NaN, 0.5, 0.5]"), "field thresholds .* is not a list of numbers"),
    (dict(thresholds="[0.5]"), "field thresholds .* for each of the 3 labels"),
    (dict(thresholds='["a", "b", "c"]'), "field thresholds .* is not a list of numbers"),
    ({"run_config.labels": ["a", "b"], "labels": '["a", "b"]'},
     "field run_config.labels \\(2 labels\\) do not fit the graph's 3 outputs"),
    ({"run_config.labels": ["a", "b", "c", "d", "e"], "labels": '["a", "b", "c", "d", "e"]'},
     "do not fit the graph's 3 outputs"),
    (dict(run_config="{not json"), "field run_config .* is not JSON"),
    (dict(run_config="[1, 2]"), "field run_config .* is not a JSON object"),
    ({"run_config.model_type": "Transfer_Cnn99", "model_type": '"Transfer_Cnn99"'},
     "field run_config.model_type .* names no model"),
    ({"run_config.labels": [1, 2, 3], "labels": "[1, 2, 3]"},
     "field run_config.labels .* is not a list of label names"),
    (dict(min_samples='"10"'), "field min_samples .* is not a number of samples"),
    ({"run_config.audio.clip_samples": 4 * 10**12, "clip_samples": str(4 * 10**12)},
     "field run_config.audio.clip_samples .* is not a clip length of up to 3600 s"),
    ({"run_config.audio.clip_samples": 0, "clip_samples": "0"},
     "field run_config.audio.clip_samples \\(0\\) is not a clip length"),
    ({"run_config.audio.sample_rate": 0, "sample_rate": "0"},
     "field run_config.audio.sample_rate \\(0\\) is not a sample rate"),
    ({"run_config.task": "single_label", "task": '"single_label"', "thresholds": "null"},
     "field run_config.task .* is not what the graph computes: per-label sigmoids"),
    (dict(sample_rate="16000"), "field sample_rate \\(16000\\) contradicts run_config's 32000"),
])
def test_tampered_onnx_metadata_is_refused_naming_the_field(small_multi_label, tmp_path, changes,
                                                            words):
    path = tampered(small_multi_label, str(tmp_path / "t.onnx"), **changes)
    with pytest.raises(UsageError, match=words):
        OnnxPredictor(path)


def test_a_tampered_onnx_file_is_one_line_on_the_command_line(small_multi_label, tmp_path):
    from helpers import run_script
    path = tampered(small_multi_label, str(tmp_path / "t.onnx"), thresholds="[2, 2, 2]")
    soundfile.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    result = run_script("pytorch/main.py", "inference", f"--checkpoint_path={path}",
                        f"--audio_path={tmp_path / 'a.wav'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --checkpoint_path={path}: its metadata field thresholds")
    assert OnnxPredictor(small_multi_label).thresholds.tolist() == [0.3, 0.5, 0.6]  # the original


@pytest.mark.skipif(not os.path.isfile("/proc/cpuinfo"), reason="reads Linux's CPU flags")
def test_native_bf16_is_what_the_cpu_says():
    """The runtime's bf16 test agrees with the kernel's CPU flags (AVX-512 BF16 or AMX)."""
    from pytorch.pytorch_utils import native_bf16, usable_cores
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split()
    assert native_bf16() == ("avx512_bf16" in flags or "amx_tile" in flags)
    assert 1 <= usable_cores() <= os.cpu_count()


def set_measured_speed(path, speed):
    model = onnx.load(str(path))
    next(p for p in model.metadata_props if p.key == SPEED_KEY).value = json.dumps(speed)
    onnx.save(model, str(path))


def first_conv(predictor):
    return next(module for module in predictor.model.modules()
                if isinstance(module, torch.nn.Conv2d) and module.in_channels > 1)


@pytest.mark.slow
def test_the_runtime_is_chosen_for_the_cpu(tmp_path, monkeypatch):
    """--runtime=auto runs, on a CPU without native bf16, the .onnx exported from the
    checkpoint when it lies beside it, and only that one (another checkpoint's export is not
    taken); on one with native bf16, PyTorch in bf16 (whose answers are the fp32 model's to
    bf16 rounding), unless --precision=fp32 is asked for."""
    from helpers import SR, melody, save_checkpoint
    from pytorch import predictor as predictor_module
    from pytorch.onnx_export import export_onnx
    from pytorch.predictor import OnnxPredictor, TorchPredictor, load_predictor
    from utils.utilities import UsageError
    monkeypatch.setattr(predictor_module, "native_bf16", lambda: False)  # this CPU's answer
    checkpoint = str(tmp_path / "model.pth")
    save_checkpoint(checkpoint, ["a", "b", "c"], "single_label", melody(10).reshape(10, SR))
    assert isinstance(load_predictor(checkpoint, runtime="auto"), TorchPredictor)  # none yet
    with pytest.raises(UsageError, match=r"--runtime=onnx: no .onnx exported from .*export it "
                                         r"first: main.py export"):
        load_predictor(checkpoint, runtime="onnx")
    export_onnx(checkpoint, str(tmp_path / "model.onnx"))
    set_measured_speed(tmp_path / "model.onnx", 1.3)  # the export found onnxruntime faster
    chosen = load_predictor(checkpoint, runtime="auto")
    assert isinstance(chosen, OnnxPredictor) and chosen.source == str(tmp_path / "model.onnx")
    assert isinstance(load_predictor(checkpoint, runtime="torch"), TorchPredictor)
    waveforms = melody(3)[None, :SR]
    fp32_predictor = load_predictor(checkpoint)
    assert first_conv(fp32_predictor).weight.is_contiguous(memory_format=torch.channels_last)
    fp32 = fp32_predictor(waveforms)["probabilities"]  # channels-last on the CPU: faster
    np.testing.assert_allclose(chosen(waveforms)["probabilities"], fp32, atol=1e-4)
    # A CPU with AVX-512 BF16 or AMX (emulated on this one: the same arithmetic, slowly).
    monkeypatch.setattr(predictor_module, "native_bf16", lambda: True)
    bf16 = load_predictor(checkpoint, runtime="auto")
    assert isinstance(bf16, TorchPredictor) and bf16.precision == "bf16"
    assert first_conv(bf16).weight.is_contiguous(memory_format=torch.channels_last)
    bf16_probabilities = bf16(waveforms)["probabilities"]
    assert bf16_probabilities.dtype == np.float32 and np.abs(bf16_probabilities - fp32).max() < 0.05
    assert not np.array_equal(bf16_probabilities, fp32)  # it did run in bf16
    assert isinstance(load_predictor(checkpoint, runtime="auto", precision="fp32"), OnnxPredictor)
    with pytest.raises(UsageError, match=r"--precision=bf16: sets PyTorch's precision"):
        load_predictor(checkpoint, runtime="onnx", precision="bf16")
    # An export that ran slower than PyTorch when it was made is not taken, unless asked for.
    set_measured_speed(tmp_path / "model.onnx", 0.7)
    assert isinstance(load_predictor(checkpoint, runtime="auto"), TorchPredictor)
    assert isinstance(load_predictor(checkpoint, runtime="onnx"), OnnxPredictor)
    # The checkpoint changes (retrained, say): its old export is no longer taken.
    save_checkpoint(checkpoint, ["a", "b", "c"], "single_label", melody(10).reshape(10, SR),
                    iteration=8)
    monkeypatch.setattr(predictor_module, "native_bf16", lambda: False)
    assert isinstance(load_predictor(checkpoint, runtime="auto"), TorchPredictor)


@pytest.mark.slow
def test_an_int8_export_keeps_its_answers_and_says_so(tmp_path, features, capsys):
    """--quantize=int8: the file runs as any export does (inference reads its metadata), and
    the agreement with the float model on the holdout clips, measured, is in its metadata and
    in the command's output."""
    main(["train", f"--workspace={tmp_path}", f"--features={features}",
          "--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0", "--stop_iteration=4",
          "--save_every=4", "--eval_every=4", "--learning_rate=1e-3"])
    checkpoint = os.path.join(run_dir(tmp_path, "checkpoints"), "4_iterations.pth")
    output = tmp_path / "model_int8.onnx"
    main(["export", f"--checkpoint_path={checkpoint}", f"--output={output}", "--quantize=int8"])
    printed = capsys.readouterr().out
    assert "top-1 agreement with the float model" in printed and "holdout clips" in printed
    props = {entry.key: entry.value for entry in onnx.load(output).metadata_props}
    quantization = json.loads(props["quantization"])
    assert set(quantization["candidates"]) == {"dynamic", "static"}
    assert quantization["holdout_clips"] == 3 and quantization["top1_agreement"] >= 0.99
    graph = onnx.load(output).graph
    assert any(node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
                                "MatMulInteger") for node in graph.node)
    # The head (fc1, the classifier) stays fp32: no dequantized input into its products, so
    # the probabilities are not rounded to 256 steps.
    producers = {output: node.op_type for node in graph.node for output in node.output}
    head = [node for node in graph.node if node.op_type in ("Gemm", "MatMul")
            and "fc" in node.name]
    assert head and all(producers.get(name) != "DequantizeLinear"
                        for node in head for name in node.input)
    from pytorch.predictor import OnnxPredictor
    predictor = OnnxPredictor(str(output))
    assert predictor.run.labels == ["high", "low", "mid"]
    assert predictor(np.zeros((2, 32000), np.float32))["probabilities"].shape == (2, 3)


@pytest.mark.slow
def test_an_export_that_loses_unlikely_labels_is_refused(tmp_path, monkeypatch):
    """onnxruntime's own Sigmoid op flushes probabilities below ~1e-8 to 0 and is 10% off near
    1e-6: with it traced, the export's parity check refuses the file and writes nothing."""
    import pytorch.models as models_module
    monkeypatch.setattr(models_module, "sigmoid", torch.sigmoid)
    checkpoint = official_tagger_checkpoint(str(tmp_path / "tagger.pth"))
    output = tmp_path / "tagger.onnx"
    with pytest.raises(UsageError, match="unlikely labels differ from PyTorch's by 100.0%"):
        main(["export", f"--checkpoint_path={checkpoint}", f"--output={output}"])
    assert os.listdir(tmp_path) == ["tagger.pth"]


def test_calibration_runs_in_passes_that_bound_its_memory():
    """onnxruntime keeps every activation of a calibration pass: 64 clips of 5 s go in passes
    of 8 (40 s of audio), of 30 s one at a time; a pass count always divides the clips; the
    reader restarts on each pass's clips."""
    from pytorch.quantize import ClipReader, clips_per_pass

    assert clips_per_pass(64, 5 * SR) == 8 and clips_per_pass(64, 30 * SR) == 1
    assert clips_per_pass(64, SR // 2) == 64 and clips_per_pass(37, 5 * SR) == 1
    assert clips_per_pass(60, 10 * SR) == 4 and clips_per_pass(3, 5 * SR) == 3
    clips = [{"waveform": np.full(4, value, np.float32)} for value in range(6)]
    reader = ClipReader(clips, [5, 1, 3])
    assert len(reader) == 3
    reader.set_range(1, 3)
    seen = [reader.get_next()["waveform"][0, 0] for _ in range(2)]
    assert seen == [1.0, 3.0] and reader.get_next() is None


def exported_nodes(model_type, path, **export_options):
    """The graph nodes of an untrained `model_type` (AudioSet-sized) exported to `path`."""
    model = create_model(model_type, **AudioConfig().front_end(), classes_num=527).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, SR),), path, dynamo=False, opset_version=17,
                          input_names=["waveform"], **export_options)
    return list(onnx.load(path).graph.node)


@pytest.mark.parametrize("model_type", ["Cnn6", "Wavegram_Logmel_Cnn14"])
def test_the_quantizer_keeps_the_whole_log_mel_front_end_in_fp32(model_type, tmp_path):
    """The nodes kept in fp32 are the log-mel front end's: the framing, the STFT's and the mel
    matrix's products and the log, also where a convolution of the waveform comes first in the
    graph (Wavegram_Logmel_Cnn14's wavegram branch); no convolution of the CNN is among them."""
    from pytorch.quantize import front_end_nodes

    nodes = exported_nodes(model_type, str(tmp_path / "model.onnx"))
    kept = set(front_end_nodes(nodes))
    products = [node.name for node in nodes if node.op_type == "MatMul"]
    assert len(products) == 3 and kept.issuperset(products)
    assert any(node.op_type == "Log" and node.name in kept for node in nodes)
    cnn = [node.name for node in nodes if node.op_type == "Conv" and "conv_block" in node.name]
    assert cnn and not kept.intersection(cnn)


def test_the_tensor_the_int8_head_reads_is_quantized_from_zero(tmp_path):
    """Static int8: the last convolution's ReLU is quantized with it, so the fp32 head reads a
    tensor whose 8-bit range starts at 0 (zero point 0) rather than one spread over the
    pre-activation's negative half as well (zero point near 128, half the steps); the head
    (pooling, fc layers) stays fp32."""
    import onnx.numpy_helper
    from helpers import tone
    from pytorch.quantize import head_nodes, quantized

    path = str(tmp_path / "model.onnx")
    nodes = exported_nodes("Cnn6", path, dynamic_axes={"waveform": {0: "batch"}})
    last_conv = max(index for index, node in enumerate(nodes) if node.op_type == "Conv")
    head = head_nodes(nodes)
    assert nodes[last_conv + 1].op_type == "Relu" and nodes[last_conv + 1].name not in head
    assert head == [node.name for node in nodes[last_conv + 2:]]
    # MobileNetV2's ReLU6 (a Clip, its bounds as Constant nodes between) goes with its conv too
    nodes = exported_nodes("MobileNetV2", str(tmp_path / "mobilenet.onnx"))
    last_conv = max(index for index, node in enumerate(nodes) if node.op_type == "Conv")
    clip = next(node for node in nodes[last_conv:] if node.op_type == "Clip")
    mobilenet_head = head_nodes(nodes)
    assert clip.name not in mobilenet_head and any("fc" in name for name in mobilenet_head)
    clips = [{"waveform": tone(220.0 * (index + 1), 1.0, SR).astype(np.float32)}
             for index in range(4)]
    graph = onnx.load(quantized(path, "static", clips, np.arange(4), str(tmp_path))).graph
    constants = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in graph.initializer}
    consumers = {name: node for node in graph.node for name in node.input}
    conv = [node for node in graph.node if node.op_type == "Conv"][-1]
    quantize = consumers[conv.output[0]]
    assert quantize.op_type == "QuantizeLinear" and int(constants[quantize.input[2]]) == 0
    dequantize = consumers[quantize.output[0]]
    assert consumers[dequantize.output[0]].op_type not in ("Relu", "QuantizeLinear")


def node_with_onnxruntime():
    """(node, the node_modules holding onnxruntime-node) where both are here, else a skip:
    ONNXRUNTIME_NODE_MODULES names that folder (`npm install --ignore-scripts
    onnxruntime-node` makes one)."""
    import shutil
    node, modules = shutil.which("node"), os.environ.get("ONNXRUNTIME_NODE_MODULES", "")
    if not node or not os.path.isdir(os.path.join(modules, "onnxruntime-node")):
        pytest.skip("needs node and ONNXRUNTIME_NODE_MODULES with onnxruntime-node")
    return node, modules


def test_the_node_example_reads_the_labels_and_tags_as_inference_does(small_multi_label, tmp_path):
    """docs/examples/onnx_node.mjs: labels and clip length from the file's own metadata, the
    windows' mean probabilities equal to `main.py inference` on the same file."""
    import subprocess
    from helpers import REPO_DIR
    node, modules = node_with_onnxruntime()
    script = tmp_path / "onnx_node.mjs"  # ES modules find packages beside the script
    script.write_text(open(os.path.join(REPO_DIR, "docs", "examples", "onnx_node.mjs")).read())
    os.symlink(modules, tmp_path / "node_modules")
    rng = np.random.default_rng(3)
    wav = str(tmp_path / "a.wav")
    soundfile.write(wav, (0.3 * rng.standard_normal(int(2.5 * SR))), SR, subtype="PCM_16")
    printed = subprocess.run([node, str(script), small_multi_label, wav], capture_output=True,
                             text=True, check=True).stdout
    node_result = json.loads(printed)
    main(["inference", f"--checkpoint_path={small_multi_label}", f"--audio_path={wav}",
          f"--output={tmp_path / 'p.json'}"])
    with open(tmp_path / "p.json") as f:
        python_result = json.load(f)["files"][0]
    assert node_result["windows"] == python_result["windows"] == 3
    assert [label for label, _ in node_result["top"]] == [
        entry["label"] for entry in python_result["top"]]
    for label, probability in node_result["top"]:
        assert probability == pytest.approx(python_result["probabilities"][label], abs=1e-5)
