"""Make `utils` (repo root) and the modules in pytorch/ importable from the tests."""
import os
import sys

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO_DIR, os.path.join(REPO_DIR, "pytorch")):
    if path not in sys.path:
        sys.path.insert(0, path)
