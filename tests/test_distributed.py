"""Data-parallel training over MPI (pyconvnet.distributed): N ranks with the global batch B
train the weights one process trains with batch B; a failing or killed rank ends the job.

The mpiexec tests skip without mpi4py or mpiexec (pip install 'pyconvnet[mpi]'). Each runs
in its own process group with a timeout, and the group is killed and checked empty after."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyconvnet
import pyconvnet.functional as F
from pyconvnet.distributed import launched_under_mpi, mpi_available, shard_bounds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import mpi_worker  # noqa: E402


def _mpiexec():
    near = Path(sys.executable).parent / "mpiexec"  # the venv's, from the mpich wheel
    return str(near) if near.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(not mpi_available() or _mpiexec() is None,
                               reason="needs mpi4py and mpiexec: pip install 'pyconvnet[mpi]'")


def _env():
    """The subprocesses import the pyconvnet this process imported (the in-tree build under
    `python -m pytest`, the installed wheel under plain `pytest`), and tests/ for mpi_worker;
    they run outside the source tree, whose uncompiled package would shadow an installed one."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(pyconvnet.__file__).resolve().parent.parent), str(HERE),
                                         env.get("PYTHONPATH", "")])
    env.pop("OMP_NUM_THREADS", None)  # each rank picks its share of the cores
    return env


def _run(args, timeout=120, n=2):
    """mpiexec -n n ARGS in a new process group; (returncode, stdout, stderr, seconds). The
    group is killed on a timeout, and in every case checked to have no process left."""
    cmd = [_mpiexec(), "-n", str(n)] + [str(a) for a in args]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                         cwd=str(HERE), start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"mpiexec ran past {timeout} s (killed): {err[-2000:]}")
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(p.pid, signal.SIGKILL)
            pytest.fail("processes of the mpiexec job were still running 10 s after it ended")
    return p.returncode, out, err, time.monotonic() - t0


def _worker(tmp_path, *flags, n=2, timeout=120):
    out = tmp_path / "mpi"
    rc, _, err, _ = _run([sys.executable, HERE / "mpi_worker.py", "--out", out, *flags], timeout=timeout, n=n)
    assert rc == 0, err[-3000:]
    with np.load(str(out) + ".npz") as z:
        state = {k: z[k] for k in z.files}
    return state, json.loads(Path(str(out) + ".json").read_text())


def _assert_same_weights(got, want, rtol=2e-4, atol=2e-6):
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)


# --------------------------------------------------------------- no MPI needed
def test_shard_bounds_cover_the_batch_in_order():
    for n in (0, 1, 5, 32, 33):
        for size in (1, 2, 3, 4):
            parts = [shard_bounds(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1
            assert [h - lo for lo, h in parts] == [len(s) for s in np.array_split(np.arange(n), size)]
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(4, 2, 2)


def test_dropout_offset_draws_the_slice_of_the_whole_batch():
    """Rank r's Dropout mask is the rows lo:hi of the mask one process draws for the whole
    batch: the counter-based kernel starts at lo * (values per sample)."""
    x = np.ones((7, 3, 4, 5), np.float32)
    _, whole = F.dropout(x, 0.4, 1234, return_mask=True)
    for lo, hi in ((0, 4), (4, 7), (3, 5)):
        _, part = F.dropout(x[lo:hi], 0.4, 1234, return_mask=True, offset=lo * 60)
        np.testing.assert_array_equal(part, whole[lo:hi])
    _, shifted = F.dropout(x[4:7], 0.4, 1234, return_mask=True)
    assert not np.array_equal(shifted, whole[4:7])  # without the offset it is another mask
    with pytest.raises(ValueError, match="offset"):
        F.dropout(x, 0.4, 1, offset=-1)


def test_single_process_fit_and_cli_never_import_mpi4py(tmp_path):
    """fit without distributed=, and `pyconvnet train` without --distributed, leave mpi4py
    unimported (a fresh interpreter: nothing else has imported it)."""
    code = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
import numpy as np
import pyconvnet
from pyconvnet import models, optim, losses
from pyconvnet.training import fit
import mpi_worker
x, y = mpi_worker.make_data(40, 28)
m = models.lenet5()
fit(m, (x, y), epochs=1, batch_size=16, optimizer=optim.SGD(m.parameters(), lr=0.05),
    loss=losses.SoftmaxCrossEntropy(), validation=(x[:8], y[:8]), seed=0, verbose=False)
from pyconvnet import data, cli
d = {str(tmp_path / 'd')!r}
import os
os.makedirs(d)
data.write_idx(os.path.join(d, 'train-images-idx3-ubyte'), x[:, 0])
data.write_idx(os.path.join(d, 'train-labels-idx1-ubyte'), y.astype(np.uint8))
data.write_idx(os.path.join(d, 't10k-images-idx3-ubyte'), x[:10, 0])
data.write_idx(os.path.join(d, 't10k-labels-idx1-ubyte'), y[:10].astype(np.uint8))
rc = cli.main(['train', 'lenet5', '--data-root', d, '--no-verify', '--quiet', '--out',
               {str(tmp_path / 'run')!r}, '--batch-size', '16'])
assert rc == 0, rc
assert 'mpi4py' not in sys.modules, 'mpi4py was imported'
print('ok')
"""
    env = _env()
    env["MPLBACKEND"] = "Agg"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                       cwd=str(tmp_path), check=False)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def test_launched_under_mpi_reads_the_environment(monkeypatch):
    for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(k, raising=False)
    assert launched_under_mpi() == 0
    monkeypatch.setenv("PMI_SIZE", "4")
    assert launched_under_mpi() == 4


# --------------------------------------------------------------- under mpiexec
@needs_mpi
@pytest.mark.parametrize("bucket", [None, "0.05"])
def test_two_ranks_train_the_weights_of_one_process(tmp_path, bucket):
    """LeNet-5, momentum SGD, 2 epochs of 203 samples in global batches of 32: the last
    batch of 11 splits 6/5, so the shard-size weighting is exercised; the weights after 2
    epochs agree with one process's to float32 rounding, and both ranks hold the same ones.
    bucket: the 247 kB gradient buffer reduced in 5 pieces of <= 0.05 MiB instead of one."""
    flags = ["--model", "lenet5", "--n", "203", "--batch", "32", "--epochs", "2", "--optimizer", "momentum"]
    got, info = _worker(tmp_path, *flags, "--best", tmp_path, *(["--bucket-mib", bucket] if bucket else []))
    assert sorted(p.name for p in tmp_path.glob("best-rank*")) == ["best-rank0.npz"]  # rank 0 alone writes
    want, ref = mpi_worker.train(mpi_worker.parse(flags))
    assert info["size"] == 2 and info["ranks_agree"] and info["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
    assert info["allreduce_calls"] == 2 * 7
    _assert_same_weights(got, want)
    h, r = info["history"], ref["history"]
    np.testing.assert_allclose(h["train_loss"], r["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(h["val_loss"], r["val_loss"], rtol=1e-5)
    assert h["train_acc"] == r["train_acc"] and h["val_acc"] == r["val_acc"]
    # the run did learn something, so equal weights are not two untouched initialisations
    assert not np.allclose(want["layers.0.weight"], mpi_worker.build("lenet5", 28).state_dict()["layers.0.weight"])


@needs_mpi
@pytest.mark.parametrize("n,extra,ranks", [(101, [], 2), (100, ["--augment"], 2), (101, [], 3)])
def test_dropout_augmentation_and_an_empty_shard_follow_one_process(tmp_path, n, extra, ranks):
    """The Keras CNN (two Dropout layers, masks per global sample) with momentum SGD: 101
    samples in batches of 20 leave a last batch of 1, so rank 1 (and 2) have nothing for
    that step; 100 samples with random translations (drawn for the whole batch on every
    rank); 3 ranks share batches of 20 as 7/7/6.

    Not with Adam, nor translations and a 1-sample batch together: there one process's own
    run moves by ~1e-3 when its initial weights are perturbed by 1e-7 (Adam's g / sqrt(v)
    turns rounding noise in near-zero gradients into steps of ~lr), as much as 2 ranks move it."""
    flags = ["--model", "keras_cnn", "--n", str(n), "--batch", "20", "--epochs", "2", "--optimizer", "momentum",
             *extra]
    got, info = _worker(tmp_path, *flags, n=ranks)
    want, ref = mpi_worker.train(mpi_worker.parse(flags))
    assert info["ranks_agree"] and info["size"] == ranks
    _assert_same_weights(got, want)
    assert info["history"]["train_acc"] == ref["history"]["train_acc"]


@needs_mpi
def test_batch_norm_keeps_per_rank_statistics_and_ranks_agree(tmp_path):
    """BatchNorm normalises with each rank's own samples (documented), so the weights
    differ from one process's; every rank still ends with the same weights and the
    running statistics averaged over the ranks."""
    flags = ["--model", "cifar_cnn", "--n", "48", "--batch", "16", "--epochs", "1", "--optimizer", "adam"]
    got, info = _worker(tmp_path, *flags)
    want, _ = mpi_worker.train(mpi_worker.parse(flags))
    assert info["ranks_agree"]
    assert all(np.isfinite(v).all() for v in got.values())
    diff = max(float(np.max(np.abs(got[k] - want[k]))) for k in want if k.endswith("running_mean"))
    assert diff > 1e-6  # per-rank statistics: not one process's


@needs_mpi
def test_synchronised_batch_norm_trains_as_one_process(tmp_path):
    """sync_batchnorm=True: the statistics of the whole global batch on every rank, so the
    BatchNorm network follows one process; 49 samples in batches of 16 end with a batch of
    1, for which rank 1 joins the statistics' reductions with nothing."""
    flags = ["--model", "cifar_cnn", "--n", "49", "--batch", "16", "--epochs", "2", "--optimizer", "momentum"]
    got, info = _worker(tmp_path, *flags, "--sync-bn")
    want, ref = mpi_worker.train(mpi_worker.parse(flags))
    assert info["ranks_agree"]
    _assert_same_weights(got, want)
    assert info["history"]["train_acc"] == ref["history"]["train_acc"]


def _ck_epoch(path):
    from pyconvnet.checkpoint import load_checkpoint

    return load_checkpoint(path).meta["epoch"]


@needs_mpi
@pytest.mark.parametrize("fault", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_and_keeps_the_checkpoint(tmp_path, fault):
    """Rank 1 raises (or is SIGKILLed) at step 2 of epoch 2 while rank 0 waits for its
    gradients: the job ends in seconds with the error named, rank 0's checkpoint of epoch
    1 is intact, and no process is left (checked by _run)."""
    ck = tmp_path / "ck.npz"
    rc, out, err, seconds = _run([sys.executable, HERE / "mpi_worker.py", "--checkpoint", ck, "--epochs", "3",
                                  "--n", "96", "--fault", fault], timeout=90)
    err = out + err  # mpiexec's own report of a killed rank goes to its stdout
    assert rc != 0
    assert seconds < 60
    if fault == "raise":
        assert "rank 1 of 2 failed" in err and "RuntimeError: injected fault" in err, err[-3000:]
    else:
        assert "signal 9" in err or "Killed" in err or "BAD TERMINATION" in err, err[-3000:]
    assert _ck_epoch(ck) == 1
    assert not list(tmp_path.glob(".tmp-*"))


def _write_mnist(folder, n_train, n_test):
    from pyconvnet.data import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    x, y = mpi_worker.make_data(n_train + n_test, 28, seed=2)
    write_idx(folder / "train-images-idx3-ubyte", x[:n_train, 0])
    write_idx(folder / "train-labels-idx1-ubyte", y[:n_train].astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", x[n_train:, 0])
    write_idx(folder / "t10k-labels-idx1-ubyte", y[n_train:].astype(np.uint8))


def _cli(args, n=None):
    common = [sys.executable, "-m", "pyconvnet", "train"]
    if n is None:
        r = subprocess.run(common + args, capture_output=True, text=True, timeout=120, env={**_env(),
                           "MPLBACKEND": "Agg"}, cwd=str(HERE), check=False)
        return r.returncode, r.stdout, r.stderr
    rc, out, err, _ = _run(common + args + ["--distributed"], n=n)
    return rc, out, err


@needs_mpi
def test_cli_distributed_train_and_resume_match_one_process(tmp_path):
    """`mpiexec -n 2 pyconvnet train lenet5 --distributed` prints one process's test and
    validation accuracy; resuming its checkpoint under mpiexec continues it as one process
    does (2 epochs in all, against 2 uninterrupted epochs)."""
    d = tmp_path / "data"
    _write_mnist(d, 150, 41)
    base = ["lenet5", "--data-root", str(d), "--no-verify", "--batch-size", "24", "--seed", "1", "--json", "--quiet"]
    rc, out, err = _cli(base + ["--epochs", "2", "--out", str(tmp_path / "one")])
    assert rc == 0, err
    one = json.loads(out)
    rc, out, err = _cli(base + ["--epochs", "1", "--out", str(tmp_path / "two")], n=2)
    assert rc == 0, err
    assert out.count("{") == 1  # rank 0 alone prints
    rc, out, err = _cli(["--resume", str(tmp_path / "two" / "checkpoint.npz"), "--epochs", "2", "--json", "--quiet",
                         "--data-root", str(d), "--no-verify"], n=2)
    assert rc == 0, err
    two = json.loads(out)
    assert two["epochs"] == 2
    assert two["test_acc"] == one["test_acc"] and two["val_acc"] == one["val_acc"]
    assert abs(two["test_loss"] - one["test_loss"]) < 1e-4
    from pyconvnet.checkpoint import load_checkpoint

    a = load_checkpoint(tmp_path / "one" / "checkpoint.npz").model.state_dict()
    b = load_checkpoint(tmp_path / "two" / "checkpoint.npz").model.state_dict()
    _assert_same_weights(b, a)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


@needs_mpi
def test_cli_error_on_every_rank_ends_the_job(tmp_path):
    """A user error under --distributed that only rank 0 sees (--out is a file; rank 0
    checks it while rank 1 waits for the folder's name) is printed with the rank and ends
    the job, not a hang."""
    (tmp_path / "o").write_text("not a folder")
    rc, _, err = _cli(["lenet5", "--quiet", "--out", str(tmp_path / "o")], n=2)
    assert rc != 0
    assert "pyconvnet: error (rank 0 of 2): --out:" in err and "is a file" in err, err[-2000:]


def test_scaling_on_paper_follows_the_ring_allreduce_cost():
    """bench/distributed.py's table: a ring allreduce of B bytes over N nodes costs
    2(N-1)/N x B / bandwidth + 2(N-1) x latency; efficiency falls with N, rises with the link."""
    import importlib.util

    path = ROOT / "bench" / "distributed.py"
    if not path.is_file():
        pytest.skip("bench/ not in this checkout")
    spec = importlib.util.spec_from_file_location("bench_distributed", path)
    bd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bd)
    assert bd._ring_s(1e9, 2, 8, 0.0) == pytest.approx(1.0)  # 2*(1/2)*1 GB at 1 GB/s
    assert bd._ring_s(0, 5, 10, 1e-5) == pytest.approx(8e-5)
    rows = []
    for m in bd.MODELS:
        rows += [{"model": m, "processes": 1, "threads": 1, "step_s_median": 0.02, "batch": 32},
                 {"model": m, "processes": 1, "threads": 2, "step_s_median": 0.01, "batch": 32},
                 {"model": m, "processes": 2, "threads": 1, "step_s_median": 0.01, "batch": 32,
                  "allreduce_bytes_per_step": 4_000_000}]
    table = bd.scaling(rows, latency_us=25)
    for m in bd.MODELS:
        for gbit in bd.LINKS_GBIT:
            weak = [r["weak_efficiency"] for r in table if r["model"] == m and r["link_gbit"] == gbit]
            assert weak == sorted(weak, reverse=True) and 0 < weak[-1] < weak[0] < 1
        r = next(r for r in table if r["model"] == m and r["link_gbit"] == 10 and r["nodes"] == 2)
        assert r["weak_efficiency"] == pytest.approx(0.01 / (0.01 + 4e6 / 1.25e9 + 2 * 25e-6))
        assert next(r for r in table if r["model"] == m and r["nodes"] == 64)["strong_efficiency"] is None


def test_sync_batchnorm_needs_distributed(capsys):
    from pyconvnet import cli

    assert cli.main(["train", "lenet5", "--sync-batchnorm", "--quiet"]) == 2
    assert "--sync-batchnorm:" in capsys.readouterr().err
