"""What every experiment writes and how: its output folder, its table as Markdown and JSON,
the machine it ran on, its wall time, its thread setting and its figures. Written once here so
each experiment module holds only its own study."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time

__all__ = ["Run", "machine", "markdown_table", "log_to_stderr", "threads"]


def machine() -> dict:
    """The CPU, its features in use, cores and threads: what a result must name to be compared."""
    from .. import cpu_info, get_num_threads

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    info = cpu_info()
    return {"cpu": model, "microarch": info.get("microarch"), "isa": info.get("isa"), "cores": os.cpu_count(),
            "threads": get_num_threads(), "python": platform.python_version()}


def markdown_table(header, rows) -> str:
    """A Markdown table: ``header`` a list of column names, ``rows`` lists of cells (str() each)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def log_to_stderr(verbose=True):
    """The experiments' progress lines go to stderr (stdout holds the table)."""
    return (lambda m: print(m, file=sys.stderr, flush=True)) if verbose else (lambda m: None)


@contextlib.contextmanager
def threads(n):
    """``n`` kernel threads inside the block (None: leave the setting), restored after."""
    from .. import get_num_threads, set_num_threads

    old = get_num_threads()
    if n:
        set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


class Run:
    """One experiment run's output folder: ``results.json`` (the numbers, the command, the machine,
    the wall time) and ``results.md`` (the table) written by :meth:`finish`; figures by :meth:`path`.

    >>> run = Run("runs/x", args)          # doctest: +SKIP
    >>> run.results["table1"] = {...}
    >>> run.finish(markdown)               # writes both files, returns results
    """

    def __init__(self, out, args=None):
        self.out = out
        os.makedirs(out, exist_ok=True)
        self.t0 = time.perf_counter()
        config = {k: v for k, v in vars(args).items() if k != "func"} if args is not None else {}
        self.results = {"command": " ".join(["pyconvnet"] + sys.argv[1:]) if sys.argv else "", "config": config}

    def path(self, name):
        """Where a file of this run goes (``--out/name``)."""
        return os.path.join(self.out, name)

    def finish(self, markdown, echo=True):
        from .. import _process

        self.results["wall_seconds"] = time.perf_counter() - self.t0
        self.results["machine"] = machine()
        self.results["peak_rss_mib"] = _process.peak_rss_mib()
        with open(self.path("results.json"), "w") as f:
            json.dump(self.results, f, indent=1, default=_json_default)
        with open(self.path("results.md"), "w") as f:
            f.write(markdown.rstrip() + "\n")
        if echo:
            print(markdown)
        return self.results


def _json_default(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def run_footer(results) -> str:
    """One Markdown line naming what a result must name to be reproduced and compared: the exact
    command, the wall time and the machine (from :meth:`Run.finish`'s results)."""
    m = results.get("machine", {})
    rss = results.get("peak_rss_mib")
    return (f"Command: `{results.get('command', '')}`; wall time {results.get('wall_seconds', float('nan')) / 60:.1f} "
            f"min; machine: {m.get('cpu')} ({m.get('isa')}), {m.get('cores')} cores, {m.get('threads')} kernel "
            f"thread(s), Python {m.get('python')}" + (f"; peak RSS {rss:.0f} MiB." if rss is not None else "."))


def append_footer(run, results, echo=True):
    """Appends :func:`run_footer` to the run's results.md (after :meth:`Run.finish`)."""
    line = run_footer(results)
    with open(run.path("results.md"), "a") as f:
        f.write("\n" + line + "\n")
    if echo:
        print(line)
    return line


def run_from_args(args, finish_args, run):
    """An experiment's CLI entry for a parser built by its ``add_arguments``: ``finish_args``
    fills the mode-dependent defaults (a ValueError is a bad option: one line, exit status 2),
    then ``run(args)``; returns the exit status."""
    try:
        finish_args(args)
    except ValueError as e:
        print(f"pyconvnet: error: {e}", file=sys.stderr)
        return 2
    run(args)
    return 0


def main(name, doc, add_arguments, run_from_args, argv=None):
    """``python -m pyconvnet.experiments.<module>``: the experiment's parser (prog
    ``pyconvnet experiment name``, the first paragraph of ``doc`` as description), then
    ``run_from_args``; returns the exit status."""
    import argparse

    p = add_arguments(argparse.ArgumentParser(prog=f"pyconvnet experiment {name}", description=doc.split("\n\n")[0]))
    return run_from_args(p.parse_args(argv))
