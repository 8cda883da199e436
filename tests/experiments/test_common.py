"""The experiments' shared plumbing: the output files, the table, the machine record."""
from __future__ import annotations

import argparse
import json

from pyconvnet.experiments import _common


def test_run_writes_json_and_markdown(tmp_path, capsys):
    args = argparse.Namespace(quick=True, epochs=2, func=print)
    run = _common.Run(str(tmp_path / "out"), args)
    run.results["table"] = {"a": 1.5}
    table = _common.markdown_table(["model", "acc"], [["lenet5", "98.0%"], ["robust", "98.5%"]])
    res = run.finish(table)
    assert capsys.readouterr().out.strip() == table
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["table"] == {"a": 1.5} and saved["config"] == {"quick": True, "epochs": 2}
    assert saved["wall_seconds"] >= 0 and saved["machine"]["cores"] >= 1 and saved["machine"]["isa"]
    assert (tmp_path / "out" / "results.md").read_text() == table + "\n"
    assert res is run.results
    assert run.path("fig.png") == str(tmp_path / "out" / "fig.png")


def test_markdown_table_shape():
    t = _common.markdown_table(["a", "b", "c"], [[1, 2, 3]]).splitlines()
    assert t == ["| a | b | c |", "|---|---|---|", "| 1 | 2 | 3 |"]


def test_threads_restored():
    import pyconvnet

    before = pyconvnet.get_num_threads()
    with _common.threads(1):
        assert pyconvnet.get_num_threads() == 1
    assert pyconvnet.get_num_threads() == before


def test_run_footer_names_the_command_the_wall_time_and_the_machine(tmp_path):
    import argparse

    run = _common.Run(str(tmp_path), argparse.Namespace(x=1))
    res = run.finish("| a |\n|---|\n| 1 |", echo=False)
    line = _common.append_footer(run, res, echo=False)
    md = (tmp_path / "results.md").read_text()
    assert md.rstrip().endswith(line) and line.startswith("Command: `")
    assert "wall time" in line and "kernel thread(s)" in line and str(res["machine"]["cpu"]) in line
