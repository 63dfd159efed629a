"""The project as an installed package (pyproject.toml, installed editable by the test command's
environment): the README's Python API example runs as a saved script from another folder, and
the `panns-transfer` command is `python3 pytorch/main.py`."""
import os
import re
import subprocess
import sys

import pytest

from helpers import REPO_DIR, SR, melody, run_script, save_checkpoint

pytestmark = pytest.mark.slow


def readme_api_example():
    with open(os.path.join(REPO_DIR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("**Python API**"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def outside_the_checkout(tmp_path):
    """An environment as a user's shell has it: no PYTHONPATH, the working folder elsewhere."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder, env


def test_the_readme_api_example_runs_from_another_folder(tmp_path):
    import soundfile
    from pytorch.onnx_export import export_onnx
    folder, env = outside_the_checkout(tmp_path)
    labels = ["bass", "middle", "treble"]
    song = melody(12.0)
    checkpoint = str(tmp_path / "model.pth")
    save_checkpoint(checkpoint, labels, "single_label", [song[i * SR:(i + 1) * SR]
                                                         for i in range(3)])
    export_onnx(checkpoint, str(folder / "model.onnx"))
    soundfile.write(folder / "song.wav", song, SR)
    (folder / "example.py").write_text(readme_api_example())
    result = subprocess.run([sys.executable, "example.py"], cwd=folder, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == str(labels)
    assert re.fullmatch(r" *0\.0- *1\.0 s: \w+", lines[2])  # the timeline, one row a window
    assert lines[-1].startswith("(") and lines[-1].endswith(")")  # the embedding's shape


def test_the_console_command_is_main_py(tmp_path):
    folder, env = outside_the_checkout(tmp_path)
    command = os.path.join(os.path.dirname(sys.executable), "panns-transfer")
    assert os.path.isfile(command), "the environment lacks `pip install -e .`"
    for args in (["train", f"--workspace={folder}", "--learning_rate=5"],
                 ["runs", f"--workspace={folder}"]):
        installed = subprocess.run([command, *args], cwd=folder, env=env, capture_output=True,
                                   text=True)
        script = run_script("pytorch/main.py", *args)
        assert (installed.returncode, installed.stdout, installed.stderr) == (
            script.returncode, script.stdout, script.stderr)
        assert installed.returncode == 2 and installed.stderr.count("\n") == 1  # one line
    listed = subprocess.run([command, "--help"], cwd=folder, env=env, capture_output=True,
                            text=True)
    assert listed.returncode == 0 and "{train,evaluate,inference,embed,export" in listed.stdout
