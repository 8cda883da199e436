"""Writing the results: JSON (every raw figure), a Markdown table, a bar chart."""
from __future__ import annotations

import json
import os

from .machine import TORCH_ISA_VARS

OTHERS = ("torch", "numpy", "naive")


def fmt_ms(seconds):
    ms = seconds * 1e3
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 100:
        return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"
    return f"{ms:,.0f}"


def median(entry):
    if entry and entry.get("status") == "ok" and "time" in entry:
        return entry["time"]["median_s"]
    return None


def ratio(row, name):
    """contender median / ours median: > 1 means pyconvnet is faster."""
    ours, other = median(row["contenders"].get("ours")), median(row["contenders"].get(name))
    if ours and other and row["contenders"]["ours"].get("validated"):
        return other / ours
    return None


def cell(entry):
    if entry is None:
        return "–"
    st = entry.get("status")
    if st == "skipped":
        return "–"
    if st == "invalid":
        return "✗ wrong"
    if st == "error":
        return "error"
    if "time" not in entry:
        return "?"
    s = fmt_ms(entry["time"]["median_s"])
    if entry.get("scaled"):
        s = "~" + s
    if entry.get("validated") is False:
        s += " ⚠"
    return s


def rate(entry):
    if not entry or "time" not in entry or entry.get("status") != "ok":
        return "–"
    if "gflops" in entry:
        s = f"{entry['gflops']:.1f} GFLOP/s"
        if "frac_ceiling" in entry:
            s += f" ({100 * entry['frac_ceiling']:.0f}%)"
        return s
    if "gbps_min_traffic" in entry:
        return f"{entry['gbps_min_traffic']:.1f} GB/s"
    return "–"


BUSY_CORES = 0.3


def foreign(row):
    """Most CPU (cores) other processes used while one of this row's contenders was timed."""
    loads = [e.get("foreign_load_cores") for e in row["contenders"].values() if isinstance(e, dict)]
    loads = [v for v in loads if v is not None]
    if not loads:
        return "–"
    m = max(loads)
    return f"{m:.2f}" + (" ⚡" if m > BUSY_CORES else "")


def fmt_ratio(r, scaled=False):
    if r is None:
        return "–"
    s = f"{r:,.0f}" if r >= 100 else (f"{r:.1f}" if r >= 10 else f"{r:.2f}")
    return ("~" + s if scaled else s) + "×"


def row_line(row):
    c = row["contenders"]
    parts = [f"{row['id']}: ours {cell(c.get('ours'))} ms"]
    for name in OTHERS:
        e = c.get(name)
        if e is None or e.get("status") == "skipped":
            continue
        r = ratio(row, name)
        parts.append(f"{name} {cell(e)} ms" + (f" ({fmt_ratio(r)})" if r else ""))
        if e.get("status") in ("invalid", "error"):
            parts[-1] += f" [{e.get('error')}]"
    if c.get("ours", {}).get("validated") is False:
        parts.append(f"OURS UNVERIFIED [{c['ours'].get('error')}]")
    return " | ".join(parts)


def _machine_lines(res):
    m = res["machine"]
    cores = m["cores_available"]
    lines = [
        f"- CPU: {m['cpu_model']}"
        + (f" [{m['cpu_microarch']}]" if m.get("cpu_microarch") else "")
        + f" ({', '.join(m['cpu_simd_flags'])}), {cores} core(s) available"
        f" of {m['cores_logical']}, {m['mem_total_gib']} GiB",
        f"- Python {m['python']}, NumPy {m['numpy']}, PyTorch {m['torch'] or '— (not used)'}, "
        f"pyconvnet {m['pyconvnet']} ({m.get('pyconvnet_git') or 'no git'})",
        f"- pyconvnet BLAS: {m['pyconvnet_blas']}; OpenMP: {m.get('pyconvnet_openmp')}",
        f"- pyconvnet kernels' CPU target: {m.get('pyconvnet_isa', '?')} (this CPU runs: "
        f"{', '.join(m.get('pyconvnet_isas_available') or ['?'])})",
    ]
    if m.get("numpy_blas"):
        nb = m["numpy_blas"][0]
        lines.append(f"- NumPy BLAS: {nb.get('internal_api')} {nb.get('version')} ({nb.get('architecture')})")
    if m.get("torch_blas"):
        caps = {k: v for k, v in (m.get("env") or {}).items() if k in TORCH_ISA_VARS}
        capped = (", capped at the forced target: " + ", ".join(f"{k}={v}" for k, v in caps.items())) if caps else ""
        lines.append(f"- PyTorch backend: {m['torch_blas']}, oneDNN available: {m.get('torch_mkldnn')}; "
                     f"ATen vector ISA {m.get('torch_cpu_capability', '?')}{capped}")
    lines.append(f"- Load average (1/5/15 min) at start {m['loadavg_at_start']}, at end {m.get('loadavg_at_end')}")
    lines.append(f"- Date {m['date']}; wall time of this run {res.get('wall_s', 0):.0f} s"
                 f" (of which {res.get('quiet_wait_total_s', 0):.0f} s waiting for other processes to go quiet)")
    return lines


def markdown(res) -> str:
    out = [f"# pyconvnet benchmark ({res['mode']})", ""]
    out += _machine_lines(res)
    out.append("")
    if res["notes"]:
        out += ["Notes:", ""] + [f"- {n}" for n in res["notes"]] + [""]
    o = res["options"]
    out += [
        "Times are per call, median of repeats (ms); every contender was first validated against "
        f"`pyconvnet.functional` (max |error| ≤ {o['tol']:g} of each output's max |value|), and pyconvnet "
        "itself against PyTorch (or the NumPy contender without torch). Ratios are contender / pyconvnet: "
        "**> 1 means pyconvnet is faster**. `~` marks naive-reference figures scaled linearly from a slice "
        "(1 sample, 2 for batch norm; and 1 output channel where the full slice would take too long; see "
        "`time_basis` in the JSON); for the relaxed receptive-field rows (`relaxed_conv`, `receptive_conv`), whose "
        "naive loops are not linear in the batch, an affine fit in the number of output positions from two slices "
        "of every sample and channel; the naive reference is timed once per row and reused at every thread count. "
        "`✗ wrong` = failed validation (not timed); `⚠` = pyconvnet's cross-check failed. "
        "Rates: conv rows GFLOP/s (forward 2·N·O·OH·OW·C·kh·kw, fwd+bwd 3×) and `relaxed_conv` rows GFLOP/s "
        "(dense L, forward 2·N·C_in·n_in·n_out·k + 2·N·C_out·C_in·k·n_out, fwd+bwd 3×) with the fraction of the "
        "GEMM ceiling at that thread count; other rows (`receptive_conv` included: x, y, and for fwd+bwd "
        "grad_y, grad_x) GB/s of compulsory float32 traffic. "
        "\"others' load\": CPU cores that other processes on this shared VM used while the row was timed "
        "(machine busy time minus ours; the worst contender); ⚡ = above 0.3 cores even after one re-take, "
        "treat that row's figures with suspicion.",
        "",
    ]
    if res["ceiling"]:
        n = res["ceiling"][0]["n"]
        out += [f"## Machine ceiling: float32 GEMM {n}×{n}×{n}", "",
                "| threads | pyconvnet `linear` (bundled OpenBLAS, our threads) | NumPy `@` | torch.mm |",
                "|---:|---:|---:|---:|"]
        for c in res["ceiling"]:
            cells = []
            for k in ("pyconvnet_linear", "numpy_matmul", "torch_mm"):
                e = c.get(k)
                if not e:
                    cells.append("–")
                elif "gflops" in e:
                    cells.append(f"{e['gflops']:.1f} GFLOP/s (best {e['gflops_best']:.1f})")
                else:
                    cells.append("✗ wrong")
            out.append(f"| {c['threads']} | " + " | ".join(cells) + " |")
        out.append("")
    for t in res["options"]["threads"]:
        rows = [r for r in res["rows"] if r["threads"] == t]
        if not rows:
            continue
        out += [f"## Kernels, {t} thread{'s' if t > 1 else ''}", "",
                "| row | ours ms | ours min–max | torch ms | numpy ms | naive ms | torch/ours | numpy/ours "
                "| naive/ours | ours rate | torch rate | others' load |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            c = r["contenders"]
            ours = c.get("ours", {})
            spread = (f"{fmt_ms(ours['time']['min_s'])}–{fmt_ms(ours['time']['max_s'])}"
                      if "time" in ours else "–")
            out.append(" | ".join([
                f"| `{r['id']}`", cell(ours), spread, cell(c.get("torch")), cell(c.get("numpy")),
                cell(c.get("naive")), fmt_ratio(ratio(r, "torch")), fmt_ratio(ratio(r, "numpy")),
                fmt_ratio(ratio(r, "naive"), scaled=True), rate(ours), rate(c.get("torch")), foreign(r)]) + " |")
        out.append("")
    out += training_markdown(res.get("training") or [])
    return "\n".join(out) + "\n"


def training_markdown(rows):
    if not rows:
        return []
    out = ["## Training epochs (60,000 samples, scaled from a fixed number of batches)", "",
           "Random MNIST-shaped data, forward + loss + backward + optimizer step; each contender in a fresh "
           "process (peak RSS = its VmHWM, including the 47 MB uint8 training set). torch/ours > 1 means "
           "pyconvnet is faster.", "",
           "| row | threads | pyconvnet s/epoch | torch s/epoch | torch/ours | pyconvnet peak RSS MiB "
           "| torch peak RSS MiB | others' load |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("status") == "skipped":
            out.append(f"| `{r['id']}` | – | skipped: {r.get('reason')} | | | | | |")
            continue
        c = r["contenders"]

        def ep(name):
            e = c.get(name) or {}
            return f"{e['epoch_s']:.2f}" if e.get("status") == "ok" else (e.get("status") or "–")

        def rss(name):
            e = c.get(name) or {}
            return f"{e['peak_rss_mib']:.0f}" if e.get("peak_rss_mib") else "–"
        o, t = c.get("ours") or {}, c.get("torch") or {}
        rt = (f"{t['epoch_s'] / o['epoch_s']:.2f}×" if o.get("status") == "ok" and t.get("status") == "ok"
              else "–")
        out.append(f"| `{r['id']}` | {r['threads']} | {ep('ours')} | {ep('torch')} | {rt} | {rss('ours')} "
                   f"| {rss('torch')} | {foreign(r)} |")
    errs = [f"- `{r['id']}` {k}: {e.get('error') or e.get('reason')}" for r in rows
            for k, e in (r.get("contenders") or {}).items() if e.get("status") not in ("ok", None)]
    return out + [""] + errs + ([""] if errs else [])


def chart(res, path):
    """Horizontal bars of torch/ours and numpy/ours per row (log scale), one panel per thread count."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return "matplotlib not installed: chart skipped"
    threads = [t for t in res["options"]["threads"] if any(r["threads"] == t for r in res["rows"])]
    if not threads:
        return "no kernel rows: chart skipped"
    ids = list(dict.fromkeys(r["id"] for r in res["rows"]))
    fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 0.32 * len(ids) + 1.6),
                             sharey=True, squeeze=False)
    series = [("torch", "torch / ours", "#d62728"), ("numpy", "numpy im2col / ours", "#1f77b4")]
    for ax, t in zip(axes[0], threads):
        rows = {r["id"]: r for r in res["rows"] if r["threads"] == t}
        h = 0.4
        for k, (name, lab, col) in enumerate(series):
            vals = [ratio(rows[i], name) if i in rows else None for i in ids]
            ys = [j + (k - 0.5) * h for j in range(len(ids))]
            ax.barh([y for y, v in zip(ys, vals) if v], [v for v in vals if v], height=h, color=col, label=lab)
            for y, v in zip(ys, vals):
                if v:
                    ax.text(v, y, f" {v:.2g}", va="center", fontsize=6)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}: time ratio (> 1: pyconvnet faster)", fontsize=9)
        ax.set_yticks(range(len(ids)))
        ax.set_yticklabels(ids, fontsize=7)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0][0].invert_yaxis()  # shared y axis: invert once, first row on top
    fig.suptitle(f"pyconvnet vs PyTorch CPU and NumPy im2col — {res['machine']['cpu_model']}, target "
                 f"{res['machine'].get('pyconvnet_isa', '?')}", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(series), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    tmp = path + ".tmp"
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return None


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_all(res, out_dir, stem):
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"{stem}.{k}") for k in ("json", "md", "png")}
    note = chart(res, paths["png"])
    if note:
        res["notes"].append(note)
        paths.pop("png")
    _write(paths["md"], markdown(res))
    _write(paths["json"], json.dumps(res, indent=1, default=float) + "\n")
    return list(paths.values())
