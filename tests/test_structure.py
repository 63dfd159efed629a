"""The code's shape: no import circle in pytorch/ and utils/, utils/ free of torch, no function
longer than 80 lines, every command-line flag declared once (utils/arguments.SHARED_FLAGS or a
config option), and no test module importing another."""
import ast
import glob
import os
import re
import subprocess
import sys

from helpers import REPO_DIR
from utils.arguments import SHARED_FLAGS
from utils.config import AudioConfig, RunConfig, option_flag, options

PACKAGES = ("pytorch", "utils")
MAX_FUNCTION_LINES = 80


def modules():
    """{module name: parsed tree} of every module in pytorch/ and utils/."""
    found = {}
    for package in PACKAGES:
        for path in glob.glob(os.path.join(REPO_DIR, package, "*.py")):
            name = f"{package}.{os.path.splitext(os.path.basename(path))[0]}"
            with open(path, encoding="utf-8") as f:
                found[name] = ast.parse(f.read(), path)
    return found


def import_graph(trees):
    """{module: modules of pytorch/ and utils/ it imports}, imports inside functions included."""
    graph = {}
    for name, tree in trees.items():
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)  # from pytorch import train: the module pytorch.train
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = sorted(imported & set(trees) - {name})
    return graph


def find_cycle(graph):
    """One import circle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for successor in graph[node]:
            if state.get(successor) == "open":
                return stack[stack.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_no_import_cycle_in_pytorch_and_utils():
    graph = import_graph(modules())
    assert "pytorch.checkpoints" in graph and graph["pytorch.restore"]  # the walk sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_checkpoint_module_imports_torch_and_utils_only():
    graph = import_graph(modules())
    assert all(name.startswith("utils.") for name in graph["pytorch.checkpoints"])
    assert not any(name.startswith("pytorch.") for module, imports in graph.items()
                   if module.startswith("utils.") for name in imports)  # utils/ is torch-free


def imported_names(tree):
    """Every module name a tree imports, at any level (inside functions too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


TORCH_PACKAGES = ("torch", "torchlibrosa", "onnxruntime", "onnx")


def test_no_utils_module_imports_torch_at_any_level():
    found = {name: sorted(imported for imported in imported_names(tree)
                          if imported.split(".")[0] in TORCH_PACKAGES)
             for name, tree in modules().items() if name.startswith("utils.")}
    assert "utils.features" in found  # the walk sees utils/
    assert not {name: imports for name, imports in found.items() if imports}
    # Nor through a library they import: loading every one leaves torch unloaded.
    check = "".join(f"import {name}\n" for name in sorted(found)) + (
        "import sys\nloaded = sorted(name for name in %r if name in sys.modules)\n"
        "assert not loaded, loaded\n" % (TORCH_PACKAGES,))
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO_DIR,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_test_module_imports_another():
    """Tests share through helpers.py and conftest.py fixtures only."""
    crossing = []
    for path in glob.glob(os.path.join(REPO_DIR, "tests", "*.py")):
        with open(path, encoding="utf-8") as f:
            names = imported_names(ast.parse(f.read(), path))
        crossing += [f"{os.path.basename(path)}: {name}" for name in names
                     if name.split(".")[-1].startswith("test_")]
    assert not crossing


def test_no_function_is_longer_than_80_lines():
    long_functions = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in modules().items() for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long_functions


def test_flags_are_declared_once():
    """A shared flag in SHARED_FLAGS, a training option on its config field: never both, and
    no module adds either by hand."""
    option_flags = {option_flag(field)[0] for config_class in (RunConfig, AudioConfig)
                    for field in options(config_class).values()}
    assert "no_spec_augment" in option_flags and "learning_rate" in option_flags
    assert not option_flags & set(SHARED_FLAGS)
    declared = re.compile(r"add_argument\(\s*\"--(\w+)\"")
    # The same name for another thing in another command: packing's seed deals the folds.
    other_meaning = {("features.py", "seed")}
    again = []
    for package in PACKAGES:  # the pipeline's commands (scripts/ are stand-alone tools)
        for path in glob.glob(os.path.join(REPO_DIR, package, "*.py")):
            with open(path, encoding="utf-8") as f:
                again += [f"{os.path.basename(path)}: --{flag}"
                          for flag in declared.findall(f.read())
                          if (flag in SHARED_FLAGS or flag in option_flags)
                          and (os.path.basename(path), flag) not in other_meaning]
    assert not again
