"""DiffLM VAE checkpoints (issue 17, item 8): a killed training resumes from its last
checkpoint and ends with the weights of an uninterrupted run; the stage removes it.

Tiny offline models, single-threaded (same thread count on both sides: exact equality).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sigkill import kill_once_checkpointed
from test_difflm_recipe import make_vae, tokenized

from synthloom.methods.difflm.beta import DecreasingBeta
from synthloom.methods.difflm.train_vae import batches, train_vae

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(vae, steps, **kw):
    data = tokenized()  # 16 records, batch 6: 3 batches an epoch, the last one short
    return train_vae(
        vae,
        lambda epoch: batches(data, 6, True, seed=epoch),
        lambda: batches(data, 16, False),
        steps=steps,
        lr=1e-3,
        head_lr=1e-2,
        lr_schedule="cosine",
        warmup_steps=2,
        beta_schedule=DecreasingBeta(start=0.1, patience=1, rel_tol=0.5),
        eval_every=2,
        early_stopping_patience=100,
        device="cpu",
        seed=3,
        **kw,
    )


def _equal_weights(a, b) -> bool:
    sa, sb = a.trainable_state_dict(), b.trainable_state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_interrupted_training_resumes_mid_epoch_to_the_uninterrupted_weights(tmp_path):
    reference = make_vae("kv_memory")
    expected = _train(reference, 11)
    checkpoint = tmp_path / "vae.pt"

    def stop_at_8(record: dict) -> None:
        if record["step"] == 8 and "loss" in record:
            raise KeyboardInterrupt  # a kill during step 8; the checkpoint holds step 7

    with pytest.raises(KeyboardInterrupt):
        _train(make_vae("kv_memory"), 11, checkpoint=checkpoint, checkpoint_seconds=0.0,
               log=stop_at_8)  # fmt: skip
    saved = torch.load(checkpoint, weights_only=False)["state"]
    assert (saved["step"], saved["epoch"], saved["used"]) == (7, 2, 1)  # mid-epoch
    resumed = make_vae("kv_memory")
    history = _train(resumed, 11, checkpoint=checkpoint)
    assert history["resumed_from_step"] == 7 and history["steps_run"] == 11
    assert _equal_weights(reference, resumed)
    assert history["best_step"] == expected["best_step"]
    assert [s for s, _ in history["recon"]] == list(range(1, 12))
    assert history["recon"] == expected["recon"] and history["beta"] == expected["beta"]
    assert history["val_recon"] == expected["val_recon"]


def test_a_checkpoint_from_other_settings_is_not_resumed(tmp_path):
    checkpoint = tmp_path / "vae.pt"

    def stop_at_4(record: dict) -> None:
        if record["step"] == 4 and "loss" in record:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(make_vae("soft_prompt"), 9, checkpoint=checkpoint, checkpoint_seconds=0.0,
               log=stop_at_4)  # fmt: skip
    history = _train(make_vae("soft_prompt"), 6, checkpoint=checkpoint)  # other budget
    assert history["resumed_from_step"] == 0 and history["steps_run"] == 6


_KILL_SCRIPT = """
import sys, torch
sys.path[:0] = [{repo!r}, {tests!r}]
from pathlib import Path
from safetensors.torch import save_file
from test_difflm_checkpoint import _train
from test_difflm_recipe import make_vae
torch.set_num_threads(1)
vae = make_vae("kv_memory")
history = _train(vae, 120, checkpoint=Path(sys.argv[1]), checkpoint_seconds=1e-9)
save_file({{k: v.contiguous() for k, v in vae.trainable_state_dict().items()}}, sys.argv[2])
print("resumed_from", history["resumed_from_step"])
"""


def test_sigkill_during_vae_training_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    """A real SIGKILL part way: the rerun starts from the last checkpoint, not from zero,
    and ends with the weights of an uninterrupted run."""
    from safetensors.torch import load_file

    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, str(script)]
    ref = subprocess.run(run + [str(tmp_path / "ref.pt"), str(tmp_path / "ref.st")],
                         env=env, capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    assert "resumed_from 0" in ref.stdout
    checkpoint = tmp_path / "run.pt"
    killed_at = kill_once_checkpointed(
        run + [str(checkpoint), str(tmp_path / "run.st")],
        env,
        checkpoint,
        lambda saved: saved["state"]["step"],
        at_least=15,
        timeout=300,
    )
    assert 15 <= killed_at < 120
    rerun = subprocess.run(run + [str(checkpoint), str(tmp_path / "run.st")],
                           env=env, capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    assert f"resumed_from {killed_at}" in rerun.stdout
    a, b = load_file(str(tmp_path / "ref.st")), load_file(str(tmp_path / "run.st"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_unreadable_checkpoint_starts_training_from_zero(tmp_path):
    checkpoint = tmp_path / "vae.pt"
    checkpoint.write_bytes(b"not a torch file")
    history = _train(make_vae("soft_prompt"), 3, checkpoint=checkpoint, checkpoint_seconds=0.0)
    assert history["resumed_from_step"] == 0 and history["steps_run"] == 3
    assert torch.load(checkpoint, weights_only=False)["state"]["step"] == 2  # overwritten


def test_a_resumed_vae_stage_keeps_the_decoder_dtype_it_trained_in(tmp_path: Path) -> None:
    """`vae_dtype: auto` measures the machine; after a kill the rerun must not switch dtype
    part way through training, so the checkpoint directory remembers the first choice."""
    from tasks.difflm import remember_vae_decoder_dtype, vae_decoder_dtype

    cpu = torch.device("cpu")
    assert vae_decoder_dtype("float32", cpu, tmp_path) is torch.float32  # nothing remembered
    remember_vae_decoder_dtype(tmp_path / "ckpt", "bfloat16")
    assert vae_decoder_dtype("auto", cpu, tmp_path / "ckpt") is torch.bfloat16
    assert vae_decoder_dtype("float32", cpu, tmp_path / "ckpt") is torch.bfloat16
    (tmp_path / "ckpt" / "decoder_dtype.txt").write_text("garbage")
    assert vae_decoder_dtype("float32", cpu, tmp_path / "ckpt") is torch.float32
