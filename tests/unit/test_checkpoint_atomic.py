"""Checkpoint writes are atomic: a save or a copy interrupted by a kill leaves the
previous checkpoint loadable, and `latest()` skips the broken one.

The kill tests run a child Python process that SIGKILLs itself at a chosen point.
No Ray: one child copies a finished checkpoint into the run folder the way Ray Train
does (file by file, in place) and dies halfway through state.pt; another dies inside
`save()`, after writing the temporary state.pt and before renaming it.
"""

import hashlib
import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.errors import UserError
from training.model import checkpoint
from training.model.transformer import ModelConfig, Transformer

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TINY = {"vocab_size": 64, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**TINY))


def save_tiny(directory, step, val_loss=None) -> Path:
    """A real checkpoint of a tiny model whose weights are seeded by `step`."""
    model = tiny_model(seed=step)
    return checkpoint.save(directory, model=model, optimizer=torch.optim.AdamW(model.parameters()), step=step,
                           config={"model": TINY}, rng_states=[torch.get_rng_state()],
                           meta={"run_id": "r", "val_loss": val_loss})


# Ray Train's copy of a finished checkpoint into the run folder, killed halfway through
# state.pt. Plain Python (no torch to import), so the child starts in a blink.
COPY_AND_DIE = """
import os, signal, sys
src, dest, *order = sys.argv[1:]
os.makedirs(dest)
for name in order:
    data = open(os.path.join(src, name), "rb").read()
    with open(os.path.join(dest, name), "wb") as f:
        if name == "state.pt":
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        f.write(data)
"""

# save() killed between writing .state.pt.tmp-<pid> and renaming it to state.pt.
SAVE_AND_DIE = """
import os, signal, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import test_checkpoint_atomic as t
os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
t.save_tiny(sys.argv[3], 2)
"""


def run_child(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(UserError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def assert_loads(ckpt: Path, step: int):
    """The checkpoint loads, and into a model its weights are the ones saved at `step`."""
    state = checkpoint.load(ckpt)
    assert state["step"] == step
    model = Transformer(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])
    expected = tiny_model(seed=step).state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in model.state_dict().items())


# --------------------------------------------------------------------------- kills


@pytest.mark.parametrize("manifest_first", [True, False], ids=["manifest-copied-first", "manifest-copied-last"])
def test_kill_mid_copy_leaves_previous_checkpoint(tmp_path, manifest_first):
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "r"
    shutil.copytree(save_tiny(tmp_path / "staging1", 1, val_loss=3.0), run_dir / "checkpoint_000001")
    staged = save_tiny(tmp_path / "staging2", 2, val_loss=2.0)
    order = ["checkpoint.json", "config.yaml", "state.pt"] if manifest_first else \
        ["config.yaml", "state.pt", "checkpoint.json"]
    broken = run_dir / "checkpoint_000002"
    proc = run_child(COPY_AND_DIE, staged, broken, *order)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert 0 < (broken / "state.pt").stat().st_size < (staged / "state.pt").stat().st_size
    assert (broken / "checkpoint.json").exists() == manifest_first

    assert not checkpoint.is_complete(broken)
    assert checkpoint.latest(run_dir) == run_dir / "checkpoint_000001"
    assert_loads(checkpoint.latest(run_dir), 1)
    assert checkpoint.resolve("r", runs) == run_dir / "checkpoint_000001"
    assert checkpoint.best(run_dir) == run_dir / "checkpoint_000001"  # 000002's lower val_loss doesn't count

    why = r"state.pt is \d+ bytes, manifest says \d+" if manifest_first else "state.pt is truncated"
    assert_one_line_error(checkpoint.load, broken, match=f"corrupt checkpoint .*checkpoint_000002: {why}")
    assert_one_line_error(checkpoint.resolve, broken, runs, match=f"corrupt checkpoint .*checkpoint_000002: {why}")
    assert_one_line_error(checkpoint.resolve, "r/checkpoint_000002", runs, match="checkpoint_000002")


def test_kill_inside_save_leaves_previous_checkpoint(tmp_path):
    run_dir = tmp_path / "r"
    save_tiny(run_dir / "checkpoint_000001", 1)
    broken = run_dir / "checkpoint_000002"
    proc = run_child(SAVE_AND_DIE, ROOT, HERE, broken)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [p.name for p in broken.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".state.pt.tmp-"), leftovers  # no state.pt, no manifest
    assert checkpoint.latest(run_dir) == run_dir / "checkpoint_000001"
    assert_loads(checkpoint.latest(run_dir), 1)
    assert_one_line_error(checkpoint.load, broken, match="no checkpoint in .*checkpoint_000002")
    assert_one_line_error(checkpoint.resolve, broken, tmp_path,
                          match="corrupt checkpoint .*checkpoint_000002: no state.pt and no checkpoint.json")


# --------------------------------------------------------------------------- manifest


def test_save_writes_the_manifest_last(tmp_path):
    ckpt = save_tiny(tmp_path / "checkpoint_000007", 7, val_loss=2.5)
    manifest = json.loads((ckpt / "checkpoint.json").read_text())
    assert manifest["format"] == 1 and manifest["step"] == 7 and manifest["metrics"] == {"val_loss": 2.5}
    for name in ("state.pt", "config.yaml"):
        data = (ckpt / name).read_bytes()
        assert manifest["files"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint.json", "config.yaml", "state.pt"]  # no temp files
    assert checkpoint.is_complete(ckpt)
    checkpoint.verify(ckpt)


def test_size_mismatch_is_incomplete_and_load_says_so(tmp_path):
    older = save_tiny(tmp_path / "checkpoint_000001", 1)
    ckpt = save_tiny(tmp_path / "checkpoint_000002", 2)
    size = (ckpt / "state.pt").stat().st_size
    with open(ckpt / "state.pt", "ab") as f:
        f.write(b"extra")
    assert not checkpoint.is_complete(ckpt)
    assert checkpoint.latest(tmp_path) == older
    msg = assert_one_line_error(checkpoint.load, ckpt, match="corrupt checkpoint")
    assert msg.endswith(f"state.pt is {size + 5} bytes, manifest says {size}")

    (ckpt / "config.yaml").unlink()
    (ckpt / "state.pt").write_bytes((older / "state.pt").read_bytes())
    assert_one_line_error(checkpoint.load, ckpt, match="config.yaml is missing")


def test_unreadable_manifest_is_incomplete(tmp_path):
    ckpt = save_tiny(tmp_path / "checkpoint_000001", 1)
    (ckpt / "checkpoint.json").write_text('{"files": ')
    assert not checkpoint.is_complete(ckpt)
    assert checkpoint.latest(tmp_path) is None
    assert_one_line_error(checkpoint.load, ckpt, match="unreadable manifest checkpoint.json")


def test_verify_catches_same_size_corruption(tmp_path):
    ckpt = save_tiny(tmp_path / "checkpoint_000001", 1)
    data = bytearray((ckpt / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (ckpt / "state.pt").write_bytes(bytes(data))
    assert checkpoint.is_complete(ckpt)  # sizes only, by design
    assert_one_line_error(checkpoint.verify, ckpt, match="state.pt does not match its sha256")


def test_legacy_checkpoint_without_manifest(tmp_path):
    old = save_tiny(tmp_path / "checkpoint_000001", 1)
    new = save_tiny(tmp_path / "checkpoint_000002", 2)
    for ckpt in (old, new):
        (ckpt / "checkpoint.json").unlink()  # as written before manifests existed
    assert checkpoint.is_complete(new)
    assert checkpoint.latest(tmp_path) == new
    assert_loads(new, 2)

    data = (new / "state.pt").read_bytes()
    (new / "state.pt").write_bytes(data[: len(data) - 100])  # a copy cut short
    assert not checkpoint.is_complete(new)
    assert checkpoint.latest(tmp_path) == old
    assert_one_line_error(checkpoint.load, new, match="corrupt checkpoint .*state.pt is truncated")
    assert checkpoint.best(tmp_path) is None  # legacy folders carry no metrics


def test_latest_warns_once_per_skipped_folder(tmp_path, caplog):
    good = save_tiny(tmp_path / "checkpoint_000001", 1)
    (tmp_path / "checkpoint_000002").mkdir()
    (tmp_path / "checkpoint_000002" / "config.yaml").write_text("model: {}\n")  # the copy got this far
    with caplog.at_level(logging.WARNING, logger="training.model.checkpoint"):
        assert checkpoint.latest(tmp_path) == good
        assert checkpoint.latest(tmp_path) == good
    skipped = [r.getMessage() for r in caplog.records if "skipping incomplete checkpoint" in r.getMessage()]
    assert len(skipped) == 1 and "checkpoint_000002" in skipped[0], skipped


def test_run_with_only_incomplete_checkpoints(tmp_path):
    runs = tmp_path / "runs"
    (runs / "empty").mkdir(parents=True)
    assert_one_line_error(checkpoint.resolve, "empty", runs, match="no checkpoint in")
    ckpt = save_tiny(runs / "r" / "checkpoint_000004", 4)
    data = (ckpt / "state.pt").read_bytes()
    (ckpt / "state.pt").write_bytes(data[: len(data) // 2])
    assert checkpoint.latest(runs / "r") is None
    msg = assert_one_line_error(checkpoint.resolve, "r", runs, match="corrupt checkpoint .*checkpoint_000004")
    assert "no complete checkpoint before it" in msg
    assert msg.startswith(checkpoint.no_checkpoint_reason(runs / "r")[:40])


# --------------------------------------------------------------------------- best, list


def test_best_and_list_checkpoints_read_only_manifests(tmp_path):
    for step, val_loss in [(1, 3.0), (2, 2.0), (3, None), (4, 1.0), (5, 2.0), (6, float("nan"))]:
        save_tiny(tmp_path / f"checkpoint_{step:06d}", step, val_loss=val_loss)
    broken = tmp_path / "checkpoint_000004"  # the lowest val_loss, but its copy was cut short
    data = (broken / "state.pt").read_bytes()
    (broken / "state.pt").write_bytes(data[:100])
    (tmp_path / "not_a_checkpoint").mkdir()

    assert checkpoint.best(tmp_path) == tmp_path / "checkpoint_000005"  # ties go to the later step
    assert checkpoint.best(tmp_path, metric="accuracy") is None
    assert checkpoint.best(tmp_path / "missing") is None
    rows = checkpoint.list_checkpoints(tmp_path)
    assert [(r["step"], r["val_loss"], r["complete"]) for r in rows] == [
        (1, 3.0, True), (2, 2.0, True), (3, None, True), (4, 1.0, False), (5, 2.0, True), (6, None, True)]
    assert rows[0]["path"] == str(tmp_path / "checkpoint_000001") and rows[0]["problem"] is None
    assert "manifest says" in rows[3]["problem"]
    json.dumps(rows)  # ready for the UI as-is
    assert checkpoint.list_checkpoints(tmp_path / "missing") == []


def test_best_does_not_open_state_files(tmp_path, monkeypatch):
    save_tiny(tmp_path / "checkpoint_000001", 1, val_loss=1.5)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("best() opened a state.pt"))
    assert checkpoint.best(tmp_path) == tmp_path / "checkpoint_000001"
    assert checkpoint.list_checkpoints(tmp_path)[0]["val_loss"] == 1.5
