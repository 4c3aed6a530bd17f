"""Compiles the fake libnvidia-ml.so.1 (full and old-driver variants) against NVIDIA's nvml.h."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
SOURCES = tuple(HERE / name for name in ("fake_state.c", "fake_nvml.c", "fake_events.c", "fake_control.c"))
HEADERS = (HERE / "fake_state.h",)
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_ROOT = REPO_ROOT / "build" / "fake-nvml"
LIBRARY_NAME = "libnvidia-ml.so.1"
VARIANTS: dict[str, tuple[str, ...]] = {"full": (), "old": ("-DFAKE_NVML_OLD_DRIVER",)}
FLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", f"-Wl,-soname,{LIBRARY_NAME}")


class BuildError(RuntimeError):
    """The fake library cannot be built; the message says what is missing."""


def nvml_header() -> Path:
    """NVIDIA's nvml.h from the nvidia-nvml-dev wheel, wherever the environment installed it."""
    spec = importlib.util.find_spec("nvidia")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        found = sorted(Path(location).glob("*/include/nvml.h"))
        if found:
            return found[-1]  # the newest CUDA major (cu12 < cu13) if several are installed
    raise BuildError(
        "NVIDIA's nvml.h was not found: install the test extra "
        "(`.venv/bin/pip install nvidia-nvml-dev`), which ships it under nvidia/cu*/include/"
    )


def compiler() -> str:
    """The C compiler named by $CC, else `cc`."""
    name = os.environ.get("CC", "cc")
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"no C compiler: `{name}` is not on PATH (install gcc, or set CC)")
    return path


def library_path(variant: str) -> Path:
    """Where a variant's library lands: build/fake-nvml/<variant>/libnvidia-ml.so.1."""
    return BUILD_ROOT / variant / LIBRARY_NAME


def build(variant: str = "full") -> Path:
    """Build one variant if its source, header or flags changed since the last build; its path."""
    if variant not in VARIANTS:
        raise BuildError(f"unknown fake NVML variant {variant!r}; known: {', '.join(VARIANTS)}")
    header = nvml_header()
    command = [compiler(), *FLAGS, *VARIANTS[variant], f"-I{HERE}", f"-I{header.parent}"]
    digest = hashlib.sha256()
    for path in (*SOURCES, *HEADERS, header):
        digest.update(path.read_bytes())
    digest.update(shlex.join(command).encode())
    target = library_path(variant)
    stamp = target.with_name("source.sha256")
    if target.exists() and stamp.exists() and stamp.read_text() == digest.hexdigest():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename: a concurrent loader never sees half a library.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        output = Path(scratch) / LIBRARY_NAME
        result = subprocess.run(
            [*command, "-o", str(output), *map(str, SOURCES)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise BuildError(f"compiling the fake NVML ({variant}) failed:\n{result.stderr}")
        output.replace(target)
    stamp.write_text(digest.hexdigest())
    return target


def build_all() -> dict[str, Path]:
    """Build every variant; their paths by variant name."""
    return {variant: build(variant) for variant in VARIANTS}


if __name__ == "__main__":
    try:
        for variant_name, path in build_all().items():
            print(f"{variant_name}: {path}")  # noqa: T201 - the command's output
    except BuildError as error:
        sys.exit(str(error))
