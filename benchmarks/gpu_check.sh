#!/usr/bin/env bash
# The whole GPU check of the torch integration in one run, for a lent GPU machine
# (Ubuntu, torch + CUDA + nvcc + cmake + pybind11 + scikit-build-core installed, no
# registry, no x265/libde265): unpack the Debian packages carried in .debs/, build the
# package with CUDA, run the kernel and proxy-step benchmarks, then the CUDA tests
# ("core", the default), or the training-step benchmarks ("train"), or the folder
# encoding benchmark ("encode"), or all of them ("all", which needs more than one
# command's 600 s: run the parts one after another).
#
# Prepare here (Debian):  mkdir -p .debs && (cd .debs && apt-get download \
#     libx265-199 libx265-dev libde265-0 libde265-dev libnuma1 \
#     libpng16-16 libpng-dev zlib1g-dev)
# (libpng and zlib only build bpgenc-npp/bpgdec-npp, the authors' pattern that
# train_throughput.py compares with; without them that row says "not run".)
# Run there (carry .debs): bash benchmarks/gpu_check.sh [core|train|encode|all]  (logs under $OUT)
#
# Everything runs in one go within GPU_CHECK_SECONDS (default 540 s, under the device's
# 10-minute limit per command): each step's own limit is cut to what is left of it.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-core}
case "$what" in core | train | encode | all) ;; *) echo "usage: $0 [core|train|encode|all]" >&2; exit 2 ;; esac
out=${OUT:-/tmp/npp_ext_gpu}
mkdir -p "$out"
budget=${GPU_CHECK_SECONDS:-540}
prefix=/tmp/npp_ext_deps
libdir=$prefix/usr/lib/x86_64-linux-gnu
rm -rf "$prefix" && mkdir -p "$prefix"
for deb in .debs/*.deb; do dpkg -x "$deb" "$prefix"; done
# The build finds x265 and libde265 through BPG_DEPS_PREFIX alone and links both from the
# prefix by full path: no LIBRARY_PATH (unset, so that one left in the environment cannot
# hide a regression).
unset LIBRARY_PATH
# Debian's libz.so is an absolute link to its own /lib copy: point it at this system's.
zlink="$libdir/libz.so"
if [ -L "$zlink" ] && [ ! -e "$zlink" ]; then
    ln -sf "$(ldconfig -p | awk '/libz\.so\.1 /{print $NF; exit}')" "$zlink"
fi
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
nvcc --version | tail -2 | tee "$out/nvcc.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

t0=$SECONDS
python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/npp_ext_site \
    -C cmake.define.BPG_DEPS_PREFIX="$prefix" -C cmake.define.NPP_EXT_CUDA=ON \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES=90 . 2>&1 | tail -5
echo "build: $((SECONDS - t0)) s" | tee "$out/summary.txt"
# x265 is linked in from the prefix's libx265.a; the module's RUNPATH finds libde265 and
# libnuma in the prefix (LD_LIBRARY_PATH below is only a fallback for the other tools).
(env -u LD_LIBRARY_PATH ldd /tmp/npp_ext_site/npp_ext/_bpg*.so || true) \
    | grep -E "x265|de265|numa" | tee "$out/link.txt" || true
export LD_LIBRARY_PATH="$libdir:${LD_LIBRARY_PATH:-}"
export PYTHONPATH=/tmp/npp_ext_site
cd /tmp  # import the built package, not the source tree
repo=$OLDPWD
# One lease is short: a failing step is logged and the next still runs, each under its own
# time limit (and what is left of the budget); the benchmarks (the owed numbers) go first,
# then the memory-growth test, then the other CUDA tests.
status=0
step() {  # step NAME SECONDS COMMAND...: log to $out/NAME.txt, time and result to summary.txt
    local name=$1 limit=$2 t0=$SECONDS rc=0
    shift 2
    local left=$((budget - SECONDS))
    [ "$limit" -le "$left" ] || limit=$left
    if [ "$limit" -lt 10 ]; then
        echo "$name: skipped, the budget of $budget s is spent" | tee -a "$out/summary.txt"
        status=1
        return
    fi
    PYTHONUNBUFFERED=1 timeout "$limit" "$@" >"$out/$name.txt" 2>&1 || rc=$?
    tail -25 "$out/$name.txt"
    echo "$name: rc=$rc in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}
pytest_gpu=(python3 -m pytest -q -rfE -p no:cacheprovider -o faulthandler_timeout=150)
memory_test=$repo/tests/test_autograd.py::test_cuda_side_stream_and_steady_memory
if [ "$what" = core ] || [ "$what" = all ]; then
    step kernels 200 python3 "$repo/benchmarks/kernels.py" --device cuda
    step proxy_step 90 python3 "$repo/benchmarks/proxy_step.py" --device cuda
    step memory 60 "${pytest_gpu[@]}" "$memory_test"
    # Only the tests that need a GPU (marked by tests/conftest.py); CI runs the others.
    step tests 180 "${pytest_gpu[@]}" -m gpu -k "not test_cuda_side_stream_and_steady_memory" \
        "$repo/tests/test_ops.py" "$repo/tests/test_autograd.py" "$repo/tests/test_models.py"
fi
if [ "$what" = train ] || [ "$what" = all ]; then
    # The tools for the authors' pattern in train_throughput.py (find_tools builds them there).
    step bench_tools 120 bash -c "cmake -S '$repo/third_party/libbpg' -B '$repo/build/bench-tools' \
        -G Ninja -DCMAKE_BUILD_TYPE=Release -DBPG_BUILD_TOOLS=ON -DBPG_BUILD_TESTS=OFF \
        -DBPG_DEPS_PREFIX='$prefix' -DCMAKE_PREFIX_PATH='$prefix/usr' \
        && cmake --build '$repo/build/bench-tools' && ls '$repo/build/bench-tools'/bpg*-npp"
    step train_64 240 python3 "$repo/benchmarks/train_throughput.py" --device cuda --batch 64 \
        --size 256 --level 8 --chunks 1 4 8 --profile
    step train_16 120 python3 "$repo/benchmarks/train_throughput.py" --device cuda --batch 16 \
        --size 256 --level 8 --chunks 1 4 8 --profile
fi
if [ "$what" = encode ] || [ "$what" = all ]; then
    # 1,000 images of mixed sizes around 512x512, plain and through an NPP on the GPU.
    step encode_1000 400 python3 "$repo/benchmarks/encode_throughput.py" --device cuda \
        --count 1000 --level 8 --cores 1,16 --modes plain,npp
fi
exit $status
