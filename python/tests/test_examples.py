"""The Python example in examples/python/ runs to completion, as its docstring says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_seed_example_runs_and_says_what_it_showed():
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "seed.py")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("hub on 127.0.0.1:") and lines[0].endswith("leaf linked: True")
    assert lines[1] == "replicated both ways: hello {'text': 'all systems go'}"
    assert lines[2].startswith("20 concurrent misses, 1 load:")
    assert lines[3] == "visits on both: 5 5"
    assert lines[-1] == "done"
