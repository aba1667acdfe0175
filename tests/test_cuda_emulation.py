"""The CUDA kernels' own source, run on the CPU under an emulated launch model.

No GPU is needed: each ``csrc/kernels/cuda/*.cu`` is compiled as C++ against
``tests/cuda_emulation/cuda_runtime.h`` (blocks in turn, a block's threads as real
threads meeting at ``__syncthreads`` on a barrier) after its ``<<<...>>>`` launches are
rewritten into calls, and ``tests/cuda_emulation/driver.cpp`` compares every kernel with
the CPU kernel on the same inputs: indexing, tiling, halos, padding, reductions and
synchronisation are checked here; speed and the GPU memory model only on a real GPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "kernels" / "cuda"
CPU_DIR = ROOT / "csrc" / "kernels" / "cpu"
EMU_DIR = Path(__file__).resolve().parent / "cuda_emulation"

_LAUNCH = re.compile(r"<<<(?P<cfg>.*?)>>>\s*\(", re.S)


def _closing_paren(text: str, open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses after a kernel launch")


def _kernel_start(text: str, end: int) -> int:
    """Start of the kernel name (with template arguments) that ends at ``end``."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if text[i - 1] == ">":  # template arguments: walk back to the matching '<'
        depth = 0
        while True:
            i -= 1
            if text[i] == ">":
                depth += 1
            elif text[i] == "<":
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:"):
        i -= 1
    return i


def rewrite_launches(source: str) -> str:
    """``k<T><<<grid, block, smem, s>>>(args)`` -> ``::emu::launch([&] { k<T>(args); }, grid,
    block, smem, s)``."""
    out = source
    while (m := _LAUNCH.search(out)) is not None:
        start = _kernel_start(out, m.start())
        kernel = out[start : m.start()].strip()
        close = _closing_paren(out, m.end() - 1)
        args = out[m.end() : close]
        call = f"::emu::launch([&] {{ {kernel}({args}); }}, {m.group('cfg')})"
        out = out[:start] + call + out[close + 1 :]
    return out


def test_rewrite_launches() -> None:
    src = "f<T, true>\n    <<<grid, kThreads, 0, s>>>(a, g(b), c);\nk<<<1, 2>>>();"
    assert rewrite_launches(src) == (
        "::emu::launch([&] { f<T, true>(a, g(b), c); }, grid, kThreads, 0, s);\n"
        "::emu::launch([&] { k(); }, 1, 2);"
    )


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    work = tmp_path_factory.mktemp("cuda_emulation")
    sources = []
    for cu in sorted(CUDA_DIR.glob("*.cu")):
        target = work / (cu.stem + "_emulated.cpp")
        target.write_text(rewrite_launches(cu.read_text()))
        sources.append(target)
    assert len(sources) >= 5, "expected the CUDA kernels under csrc/kernels/cuda"
    exe = work / "driver"
    cmd = [
        cxx, "-std=c++20", "-O1", "-pthread", "-ffp-contract=off", "-w",
        f"-I{EMU_DIR}", f"-I{CUDA_DIR}", f"-I{ROOT / 'csrc' / 'kernels'}",
        f"-I{ROOT / 'third_party' / 'libbpg' / 'include'}",
        str(EMU_DIR / "driver.cpp"), *map(str, sources), *map(str, sorted(CPU_DIR.glob("*.cpp"))),
        "-o", str(exe),
    ]  # fmt: skip
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if build.returncode != 0 and "barrier" in build.stderr and "No such file" in build.stderr:
        pytest.skip("the C++ standard library has no <barrier> (C++20)")
    assert build.returncode == 0, build.stderr[-4000:]
    return exe


def test_cuda_kernels_match_the_cpu_kernels(driver: Path) -> None:
    run = subprocess.run([str(driver)], capture_output=True, text=True, timeout=600)
    lines = run.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert run.returncode == 0 and not failed, "\n".join(failed) or run.stderr[-2000:]
    # every op was exercised, not skipped by an early status
    checked = " ".join(lines)
    for op in ("rgb_to_yuv", "yuv_to_rgb", "qp_scale fwd", "qp_scale bwd grad_scale",
               "pixel_branch fwd", "pixel_branch bwd grad_w1", "branch_sum_clamp"):  # fmt: skip
        assert op in checked, op
    assert len(lines) > 100
