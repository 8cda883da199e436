"""The README's headline tables from a bench run: ``python -m bench.headline [bench.json]``.

Kernel rows: fwd+bwd (and conv2d forward) at 1 and 2 threads, ours vs torch, the
NumPy im2col contender and the naive loops as ratios (> 1: pyconvnet is faster), and
conv rows' share of the GEMM ceiling. Training rows: seconds per epoch and peak RSS.
Everything is read from the JSON the run wrote; nothing is re-measured."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _median(row, who):
    c = row["contenders"].get(who, {})
    return c.get("time", {}).get("median_s") if c.get("status") == "ok" else None


def _ratio(row, who):
    o, t = _median(row, "ours"), _median(row, who)
    if not o or not t:
        return "—"
    approx = "~" if row["contenders"][who].get("scaled") else ""
    return f"{approx}{t / o:,.2f}×" if t / o < 100 else f"{approx}{t / o:,.0f}×"


def kernel_table(d) -> list[str]:
    rows = {}
    for r in d["rows"]:
        rows.setdefault((r["op"], r["label"], r["mode"]), {})[r["threads"]] = r
    out = ["| kernel (float32) | 1 thread: ours / torch ms | torch ÷ ours | 2 threads: ours / torch ms | torch ÷ ours "
           "| NumPy ÷ ours (1 / 2 thr) | naive ÷ ours | ours % of GEMM ceiling (1 / 2 thr) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (op, label, mode), by in rows.items():
        if mode != "fwdbwd" and not (op == "conv2d" and mode == "fwd"):
            continue
        cells, numpy, frac = [], [], []
        for th in (1, 2):
            r = by.get(th)
            if r is None:
                cells += ["—", "—"]
                numpy.append("—")
                frac.append("—")
                continue
            o, t = _median(r, "ours"), _median(r, "torch")
            cells.append(f"{o * 1e3:.3g} / {t * 1e3:.3g}" if t else f"{o * 1e3:.3g} / —")
            cells.append(_ratio(r, "torch"))
            numpy.append(_ratio(r, "numpy"))
            f = r["contenders"]["ours"].get("frac_ceiling")
            frac.append(f"{f * 100:.0f}%" if f else "—")
        naive = _ratio(by[min(by)], "naive")
        out.append(f"| `{op} {label} {mode}` | " + " | ".join(cells) + f" | {' / '.join(numpy)} | {naive} | "
                   + " / ".join(frac) + " |")
    return out


def training_table(d) -> list[str]:
    out = ["| training epoch (60,000 samples) | threads | ours s | torch s | torch ÷ ours | peak RSS ours / torch MiB |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in d.get("training", []):
        o, t = r["contenders"].get("ours", {}), r["contenders"].get("torch", {})
        if o.get("status") != "ok":
            continue
        name = f"{r['model']} ({r['optimizer']}, batch {r['batch']})"
        if t.get("status") == "ok":
            out.append(f"| {name} | {r['threads']} | {o['epoch_s']:.2f} | {t['epoch_s']:.2f} | "
                       f"{t['epoch_s'] / o['epoch_s']:.2f}× | {o['peak_rss_mib']:.0f} / {t['peak_rss_mib']:.0f} |")
        else:
            out.append(f"| {name} | {r['threads']} | {o['epoch_s']:.2f} | — | — | {o['peak_rss_mib']:.0f} / — |")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).parent / "results" / "bench.json"
    d = json.loads(path.read_text())
    print("\n".join(kernel_table(d) + [""] + training_table(d)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
