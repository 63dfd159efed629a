"""Many files as one stream: the results of file-by-file inference, in the order of the files,
from full batches that mix files; a bad file among good ones; lists and globs; the output
written as files complete."""
import csv
import json
import os

import numpy as np
import pytest

from helpers import SR, melody, save_checkpoint, write_tone
from pytorch.file_stream import FileStream, predict_paths
from pytorch.inference import find_audio_files
from pytorch.main import main
from pytorch.predictor import load_predictor
from pytorch.windows import predict_file, window_samples_of

LABELS = ["bass", "middle", "treble"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("stream") / "model.pth")
    save_checkpoint(path, LABELS, "single_label", melody(10).reshape(10, SR))
    return load_predictor(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Twelve files of 0.4 to 3.15 s (1 to 4 one-second windows each, 27 in all) and a broken one."""
    root = tmp_path_factory.mktemp("files")
    for index in range(12):
        write_tone(str(root / f"f{index:02d}.wav"), 150.0 * (1 + index % 5), 0.4 + 0.25 * index,
                   SR)
    (root / "f05b.wav").write_bytes(b"not audio at all")
    return root


class CountingPredictor:
    """The predictor under test, recording each batch's size."""

    def __init__(self, predictor):
        self.predictor, self.batches = predictor, []
        self.run, self.min_samples = predictor.run, predictor.min_samples
        self.thresholds, self.audioset_tagger = predictor.thresholds, predictor.audioset_tagger

    def __call__(self, waveforms):
        self.batches.append(len(waveforms))
        return self.predictor(waveforms)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_stream_gives_file_by_file_results_in_order_from_full_batches(
        predictor, folder, num_workers):
    paths = find_audio_files(str(folder))
    counting = CountingPredictor(predictor)
    results = predict_paths(counting, paths, batch_size=8, verbose=False,
                            num_workers=num_workers)
    assert [result["file"] for result in results] == paths  # the order of the files
    windows = sum(result.get("windows", 0) for result in results)
    assert windows == 27 and sum(counting.batches) == 27
    # Windows of several files share batches: every batch but the last is full.
    assert counting.batches == [8, 8, 8, 3]
    [broken] = [result for result in results if "error" in result]
    assert broken["file"].endswith("f05b.wav") and "cannot decode" in broken["error"]
    for result in results:
        if "error" in result:
            continue
        alone = predict_file(predictor, result["file"], batch_size=1)
        # the same numbers up to float32 summation order (batches of 8 against batches of 1)
        np.testing.assert_allclose(result["probabilities"], alone["probabilities"], atol=1e-4)
        np.testing.assert_allclose(result["embedding"], alone["embedding"], rtol=1e-3, atol=1e-4)
        assert (result["windows"], result["duration_s"], result["predicted"]) == (
            alone["windows"], alone["duration_s"], alone["predicted"])


def test_a_file_too_long_for_a_worker_is_streamed_in_order(predictor, folder, monkeypatch):
    from pytorch import file_stream
    monkeypatch.setattr(file_stream, "STREAM_FILE_SECONDS", 2.0)  # files over 2 s: here
    paths = find_audio_files(str(folder))
    window, hop = window_samples_of(predictor.run.audio)
    stream = FileStream(predictor, window, hop, batch_size=8, num_workers=0)
    assert [stream.streamed_here(path) for path in paths].count(True) == 5  # 2.15 .. 3.15 s
    assert [path for path, *_ in stream.stream(paths)] == paths


def test_lists_and_globs_name_the_files(folder, tmp_path):
    listed = tmp_path / "files.txt"
    listed.write_text(f"# two of them\n{folder / 'f03.wav'}\n\n{os.path.relpath(folder / 'f01.wav', tmp_path)}\n")
    assert find_audio_files(str(listed)) == [str(folder / "f03.wav"),
                                             os.path.join(str(tmp_path), os.path.relpath(
                                                 folder / "f01.wav", tmp_path))]
    assert find_audio_files(str(folder / "f1*.wav")) == [str(folder / f"f{index}.wav")
                                                         for index in (10, 11)]
    from utils.utilities import UsageError
    with pytest.raises(UsageError, match="the pattern matches no file"):
        find_audio_files(str(folder / "nothing*.wav"))


@pytest.mark.slow
def test_the_command_writes_every_file_in_order_and_says_what_failed(predictor, folder, tmp_path,
                                                                    capsys):
    checkpoint = predictor.source
    for suffix in (".csv", ".json"):
        output = tmp_path / f"p{suffix}"
        with pytest.raises(SystemExit) as exit_code:
            main(["inference", f"--checkpoint_path={checkpoint}", f"--audio_path={folder}",
                  "--num_workers=2", "--batch_size=4", f"--output={output}"])
        assert exit_code.value.code == 1  # some files were skipped
        err = capsys.readouterr()
        assert "labelled 12 of 13 files (1 skipped)" in err.out and err.err.count("skipped ") == 1
        if suffix == ".csv":
            with open(output, newline="") as f:
                rows = list(csv.reader(f))[1:]
            files = [row[0] for row in rows]
            assert rows[6][-1].startswith("cannot decode")
        else:
            entries = json.loads(output.read_text())["files"]
            files = [entry["file"] for entry in entries]
            assert sum(entry["probabilities"]["bass"] >= 0 for entry in entries
                       if "error" not in entry) == 12
        assert files == find_audio_files(str(folder))
