"""Distributed training and evaluation on CPU: 2 gloo processes against 1 process.

One ``torchrun --nproc_per_node=2`` launch runs every scenario of ``_dist_worker.py``; the
tests here compute the single-process references and compare: weights after a DDP / FSDP
step and after gradient accumulation (to 1e-5), resuming a 2-process checkpoint on 1
process, exact sharded evaluation with an odd number of rows.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _dist_worker as W  # noqa: E402

from vitfas.errors import BadConfigError  # noqa: E402
from vitfas.train.distributed import (  # noqa: E402
    distributed_map,
    init_distributed,
    shard_indices,
)
from vitfas.train.engine import ResumableSampler, split_batch  # noqa: E402

SRC = HERE.parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_torchrun(work: Path, group: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           str(HERE / "_dist_worker.py"), str(work), group]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _launch(work: Path, group: str) -> list[dict]:
    """Run a group of 2-process scenarios under torchrun; each rank's results. A scenario
    that fails on either rank ends the launch at once; its traceback is the message."""
    proc = _run_torchrun(work, group)
    errors = []
    for r in (0, 1):
        f = work / f"results_{group}_rank{r}.json"
        res = json.loads(f.read_text()) if f.is_file() else {}
        errors += [f"rank {r} {name}: {value['error']}" for name, value in res.items()
                   if isinstance(value, dict) and "error" in value]
    assert not errors, "\n".join(errors)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((work / f"results_{group}_rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The engine and eval scenarios, once per module: the work folder and the results."""
    work = tmp_path_factory.mktemp("dist")
    W.make_eval_files(work / "eval")
    return work, _launch(work, "core")


@pytest.fixture(scope="module")
def two_ranks_cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """``vitfas train`` and ``vitfas pretrain-mae`` (ddp and fsdp) on 2 processes."""
    work = tmp_path_factory.mktemp("dist_cli")
    W.make_cli_files(work)
    return work, _launch(work, "cli")


def _single(run_dir: Path, **trainer):
    eng, task = W.make_engine(run_dir, **trainer)
    assert eng.world_size == 1 and not eng.distributed
    res = eng.fit()
    return eng, task, res


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol=1e-5) -> float:
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= atol, worst
    return worst


# --------------------------------------------------------------------------- no processes
def test_shard_indices_cover_exactly_once():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            shares = [shard_indices(n, r, world) for r in range(world)]
            flat = [i for s in shares for i in s]
            assert flat == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError):
        shard_indices(3, 2, 2)


def test_single_process_helpers_are_plain():
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.backend) == (0, 1, None)
    assert distributed_map(lambda c: [x * 2 for x in c], [1, 2, 3]) == [2, 4, 6]
    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        distributed_map(lambda c: c[:2], [1, 2, 3])


def test_sampler_positions_are_global():
    """Ranks take interleaved global positions; seeds depend on the position only."""
    one = ResumableSampler(10, seed=3)
    one.set_epoch(1)
    full = list(one)
    ranks = []
    for r in range(2):
        s = ResumableSampler(10, seed=3, rank=r, world_size=2)
        s.set_epoch(1)
        ranks.append(list(s))
        assert len(s) == 5
    assert [ranks[p % 2][p // 2] for p in range(10)] == full
    # resume at global sample 4 on 2 ranks = samples 4.. of the single-process epoch
    s = ResumableSampler(10, seed=3, rank=1, world_size=2)
    s.set_epoch(1, start=4)
    assert list(s) == full[5::2] and len(s) == 3
    # padding to a multiple of the world size wraps to the start of the epoch
    s = ResumableSampler(5, seed=3, rank=1, world_size=2)
    s.set_epoch(0)
    one5 = ResumableSampler(5, seed=3)
    order5 = [i for i, _ in one5]
    assert [i for i, _ in s] == [*order5[1::2], order5[0]]


def test_split_batch():
    x, y = torch.arange(12.0).view(6, 2), torch.arange(6)
    parts = split_batch([x, y, ["a", "b", "c", "d", "e", "f"], {"m": y * 2}], 3)
    assert [w for _, w in parts] == pytest.approx([1 / 3] * 3)
    assert torch.equal(parts[1][0][0], x[2:4]) and parts[2][0][2] == ["e", "f"]
    assert torch.equal(parts[0][0][3]["m"], torch.tensor([0, 2]))
    with pytest.raises(BadConfigError, match="batch of 2 samples into"):
        split_batch(torch.zeros(2, 3), 3)


def test_accumulation_equals_big_batch_single_process(tmp_path):
    _, task_a, _ = _single(tmp_path / "a", batch_size=4, accum_steps=2, max_steps=1)
    _, task_b, _ = _single(tmp_path / "b", batch_size=8, max_steps=1)
    assert task_a.seen == [task_b.seen[0][:4], task_b.seen[0][4:]]
    _assert_close(W.weights(tmp_path / "a" / "last.pt"), W.weights(tmp_path / "b" / "last.pt"))


def test_trainer_config_checks():
    from vitfas.train.engine import TrainerConfig

    with pytest.raises(BadConfigError, match="trainer.strategy must be"):
        TrainerConfig(strategy="zero3")  # type: ignore[arg-type]
    with pytest.raises(BadConfigError, match="accum_steps must be >= 1"):
        TrainerConfig(accum_steps=0)


# --------------------------------------------------------------------------- 2 processes
def test_ddp_step_matches_single_process(two_ranks, tmp_path):
    work, res = two_ranks
    _, task, _ = _single(tmp_path / "ref", batch_size=8, max_steps=1)
    r0, r1 = res[0]["ddp_step"], res[1]["ddp_step"]
    assert r0["type"] == "DistributedDataParallel" and r0["writer"] and not r1["writer"]
    # the global batch is the same 8 samples, interleaved over the ranks
    assert sorted(r0["seen"][0] + r1["seen"][0]) == sorted(task.seen[0])
    assert r0["seen"][0] == task.seen[0][0::2] and r1["seen"][0] == task.seen[0][1::2]
    worst = _assert_close(W.weights(work / "ddp_step" / "last.pt"),
                          W.weights(tmp_path / "ref" / "last.pt"))
    print(f"DDP step vs single process: max |diff| = {worst:.2e}")
    with open(work / "ddp_step" / "train_log.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1  # rank 0 alone logs


def test_ddp_sharded_evaluation_matches_single_process(two_ranks, tmp_path):
    """7 eval samples over 2 ranks (4 + 3): gathered in order, metrics as in one process."""
    _, res = two_ranks
    eng, _, _ = _single(tmp_path / "ref", batch_size=8, max_steps=1)
    ref = eng.evaluate()
    for rank in (0, 1):
        r = res[rank]["ddp_step"]
        assert r["eval_indices"] == list(range(7))  # every rank saw all, in order
        assert r["eval"]["n"] == 7 and r["eval"]["order"] == ref["order"]
        assert r["eval"]["loss"] == pytest.approx(ref["loss"], abs=1e-5)


def test_ddp_accumulation_matches_single_process(two_ranks, tmp_path):
    work, res = two_ranks
    _single(tmp_path / "ref", batch_size=8, max_steps=1)
    assert [len(s) for s in res[0]["ddp_accum"]["seen"]] == [2, 2]
    _assert_close(W.weights(work / "ddp_accum" / "last.pt"),
                  W.weights(tmp_path / "ref" / "last.pt"))


def test_fsdp_step_matches_single_process(two_ranks, tmp_path):
    work, res = two_ranks
    assert res[0]["fsdp_step"]["fsdp"]
    _single(tmp_path / "ref", batch_size=8, max_steps=1)
    _assert_close(W.weights(work / "fsdp_step" / "last.pt"),
                  W.weights(tmp_path / "ref" / "last.pt"))


def test_resume_two_process_checkpoint_on_one(two_ranks, tmp_path):
    work, res = two_ranks
    ck = torch.load(work / "ddp_resume" / "last.pt", map_location="cpu", weights_only=True)
    assert (ck["step"], ck["epoch"], ck["world_size"], ck["samples_in_epoch"]) == (3, 1, 2, 8)
    # uninterrupted single-process run of 2 epochs x 2 steps
    _, ref_task, ref = _single(tmp_path / "ref", batch_size=8, epochs=2)
    assert ref.step == 4
    # the 2-process run saw the same samples in its 3 steps
    for step in range(3):
        got = res[0]["ddp_resume"]["seen"][step] + res[1]["ddp_resume"]["seen"][step]
        assert sorted(got) == sorted(ref_task.seen[step])
    run = tmp_path / "resumed"
    run.mkdir()
    shutil.copy(work / "ddp_resume" / "last.pt", run / "last.pt")
    eng, task = W.make_engine(run, batch_size=8, epochs=2)
    out = eng.fit(resume=True)
    assert (out.step, out.epoch, out.finished) == (4, 2, True)
    assert task.seen == [ref_task.seen[3]]  # continues at global sample 8 of epoch 2
    worst = _assert_close(W.weights(run / "last.pt"), W.weights(tmp_path / "ref" / "last.pt"))
    print(f"resume 2 -> 1 processes vs uninterrupted: max |diff| = {worst:.2e}")


def test_distributed_map_odd_sizes(two_ranks):
    _, res = two_ranks
    for n, got in res[0]["distributed_map"].items():
        n = int(n)
        assert got["result"] == [10 * i for i in range(n)]
        assert res[1]["distributed_map"][str(n)]["result"] == got["result"]
        chunks = [c for rank_calls in got["chunks"] for call in rank_calls for c in call]
        assert chunks == list(range(n))  # each item processed once, none dropped
        assert len(got["chunks"][0][0]) == math.ceil(n / 2)


def test_eval_two_ranks_equals_one(two_ranks, tmp_path):
    work, res = two_ranks
    one = W.run_eval_here(work / "eval" / "bundle", work / "eval" / "manifest.csv",
                          tmp_path / "report_1")
    for rank in (0, 1):
        two = res[rank]["eval"]
        assert two["_fta"] == one["_fta"] and two["_unreadable"] == one["_unreadable"] == [5]
        assert len(two["_scores"]) == len(W.EVAL_ROWS) == 9
        for a, b in zip(two["_scores"], one["_scores"]):
            assert a == b  # bit-identical: same rows, same order, nothing lost
        # the metrics (JSON round trip, as the 2-process run reported them)
        assert _same(json.loads(json.dumps(one["frame"])), two["frame"])
    # only rank 0 wrote the report
    assert "files" in res[0]["eval"] and "files" not in res[1]["eval"]
    assert (work / "eval" / "report_2" / "scores.csv").is_file()
    with open(work / "eval" / "report_2" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [f"img{i}.png" for i in range(9)]


def test_eval_verb_two_ranks_equals_one(two_ranks):
    """``torchrun ... vitfas eval``: rank 0 prints the same JSON as one process."""
    work, res = two_ranks
    one = W.cli_json(W.eval_args(work, "report_cli_1"))
    two = res[0]["eval_cli"]
    assert res[1]["eval_cli"] == {}  # rank 1 prints nothing
    files = two.pop("files")
    assert files["scores"].endswith("report_cli_2/scores.csv")
    one.pop("files")
    assert two["meta"]["unreadable_rows"] == 1 and two["meta"]["rows_evaluated"] == 9
    assert _same(json.loads(json.dumps(one)), two)
    a = (work / "eval" / "report_cli_1" / "scores.csv").read_text()
    assert a == (work / "eval" / "report_cli_2" / "scores.csv").read_text()


def test_prepare_two_ranks_equals_one(two_ranks):
    """``data prepare`` sharded over 2 ranks: the same manifest, crops and failures."""
    work, res = two_ranks
    one_dir, two = work / "prepared_1", work / "prepared_2"
    one = W.prepare_here(work / "eval" / "manifest.csv", one_dir)
    for rank in (0, 1):
        assert res[rank]["prepare"] == json.loads(json.dumps(one))
    assert one["total"]["inputs"] == 9 and one["total"]["unreadable"] == 1
    for name in ("manifest.csv", "failures.csv"):
        a = (two / name).read_text().replace(str(two), "OUT")
        assert a == (one_dir / name).read_text().replace(str(one_dir), "OUT"), name
    with open(two / "manifest.csv", newline="") as f:
        crops = [r["path"] for r in csv.DictReader(f)]
    assert len(crops) == len(set(crops)) == 8
    for c in crops:
        assert (two / c).read_bytes() == (one_dir / c).read_bytes()


def _same(a, b, tol=1e-6) -> bool:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return all(_same(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        assert len(a) == len(b)
        return all(_same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=tol)
        return True
    assert a == b
    return True


# --------------------------------------------------------------------------- the verbs
@pytest.mark.slow
def test_train_verb_on_two_processes_matches_one(two_ranks_cli, tmp_path):
    """``vitfas train`` with DDP and FSDP (4 per process) = one process with 8 per batch."""
    from safetensors.torch import load_file

    work, res = two_ranks_cli
    one = W.cli_json(["train", str(W.train_config(work, tmp_path / "run", 8))])
    ref = load_file(tmp_path / "run" / "bundle" / "model.safetensors")
    for strategy in ("ddp", "fsdp"):
        r0, r1 = res[0][f"train_{strategy}"], res[1][f"train_{strategy}"]
        assert "bundle" in r0 and "bundle" not in r1  # rank 0 alone scores and writes
        assert r0["steps"] == one["steps"] == 8
        run = work / f"train_{strategy}" / "run"
        _assert_close(load_file(run / "bundle" / "model.safetensors"), ref, atol=1e-4)
        assert r0["threshold"]["value"] == pytest.approx(one["threshold"]["value"], abs=1e-4)
        for split in ("dev", "test"):
            for k in ("acer", "eer", "auc"):
                assert r0["metrics"][split][k] == pytest.approx(one["metrics"][split][k])
        with open(run / "train_log.csv", newline="") as f:
            assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 9))


@pytest.mark.slow
def test_pretrain_mae_on_two_processes(two_ranks_cli):
    """MAE pre-training under DDP and FSDP: the same run (same per-rank masks), one export."""
    from safetensors.torch import load_file

    work, res = two_ranks_cli
    runs = {s: work / f"mae_{s}" / "run" for s in ("ddp", "fsdp")}
    for s, run in runs.items():
        r0 = res[0][f"mae_{s}"]
        assert r0["steps"] == 4  # 32 images / (4 per process x 2)
        assert res[1][f"mae_{s}"] == {} and Path(r0["vis"]).is_file()  # rank 0 reports
        assert (run / "encoder").is_dir() and (run / "mae").is_dir()
    with open(runs["ddp"] / "train_log.csv", newline="") as f:
        ddp_loss = [float(r["loss"]) for r in csv.DictReader(f)]
    with open(runs["fsdp"] / "train_log.csv", newline="") as f:
        fsdp_loss = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(ddp_loss) == 4 and fsdp_loss == pytest.approx(ddp_loss, abs=1e-5)
    enc = [load_file(runs[s] / "encoder" / "model.safetensors") for s in ("ddp", "fsdp")]
    _assert_close(enc[0], enc[1], atol=1e-5)


def test_fsdp_units_are_the_transformer_blocks():
    from vitfas.models import create_model
    from vitfas.models.vit import VisionTransformer
    from vitfas.train.distributed import _shard_units

    vit = VisionTransformer(W.TINY)
    assert _shard_units(vit) == list(vit.blocks)
    mae = create_model("mae_vit_tiny_patch16", img_size=16, patch_size=4, embed_dim=32,
                       depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
                       decoder_num_heads=2)
    assert _shard_units(mae) == [*mae.blocks, *mae.decoder_blocks] and len(mae.blocks) == 2


# --------------------------------------------------------------------------- failures
@pytest.mark.timeout(300)
def test_a_failing_rank_ends_the_launch_within_seconds(tmp_path):
    """Rank 1 raises while rank 0 waits in a broadcast (the hang of old): the launch ends
    long before the 600 s collective timeout, and the traceback is kept."""
    t0 = time.monotonic()
    proc = _run_torchrun(tmp_path, "fail")
    took = time.monotonic() - t0
    assert proc.returncode != 0
    res = json.loads((tmp_path / "results_fail_rank1.json").read_text())
    assert "rank 1 failed on purpose" in res["one_rank_fails"]["error"]
    # rank 0 was stopped by torchrun or its broadcast failed as rank 1's connection closed
    assert took < 120, f"the launch took {took:.0f} s"


@pytest.mark.timeout(300)
def test_cli_failure_on_one_rank_names_it_and_stops_both(tmp_path):
    """``vitfas train`` under torchrun where rank 1's config does not exist: one message
    naming rank 1 and the file, both ranks gone within seconds, INFO only from rank 0."""
    W.make_cli_files(tmp_path)
    t0 = time.monotonic()
    proc = _run_torchrun(tmp_path, "fail_cli")
    took = time.monotonic() - t0
    assert proc.returncode != 0
    err = proc.stderr
    assert "vitfas train: rank 1 of 2 failed:" in err and "missing.yaml" in err, err[-3000:]
    assert "[rank 1] INFO" not in err, err[-3000:]
    assert took < 120, f"the launch took {took:.0f} s"


def test_dist_timeout_is_finite_and_configurable(monkeypatch):
    from vitfas.distributed import _timeout_s
    from vitfas.train.engine import TrainerConfig

    assert TrainerConfig().dist_timeout_s == 1800
    assert TrainerConfig(dist_timeout_s=30).dist_timeout_s == 30
    for bad in (0, -1, float("inf")):
        with pytest.raises(BadConfigError, match="dist_timeout_s"):
            TrainerConfig(dist_timeout_s=bad)
    assert _timeout_s(12.5) == 12.5
    monkeypatch.setenv("VITFAS_DIST_TIMEOUT", "45")
    assert _timeout_s(None) == 45
    monkeypatch.setenv("VITFAS_DIST_TIMEOUT", "never")
    with pytest.raises(BadConfigError, match="VITFAS_DIST_TIMEOUT"):
        _timeout_s(None)
