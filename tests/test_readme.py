"""The README's quick start is what CI runs: exactly two command lines, each found
verbatim in .ci/run (skipped where the tests run outside a source checkout)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_is_what_ci_runs():
    readme, ci = ROOT / "README.md", ROOT / ".ci" / "run"
    if not (readme.exists() and ci.exists()):
        pytest.skip("not a source checkout")
    section = readme.read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [l for l in block.splitlines() if l.strip()]
    assert len(commands) == 2, commands
    ci_lines = [l.strip() for l in ci.read_text().splitlines()]
    for c in commands:
        assert c.strip() in ci_lines, f"{c!r} is not a line of .ci/run"
