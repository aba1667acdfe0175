#!/usr/bin/env bash
# The whole GPU check of the torch integration in one run, for a lent GPU machine
# (Ubuntu, torch + CUDA + nvcc + cmake + pybind11 + scikit-build-core installed, no
# registry, no x265/libde265): unpack the Debian packages carried in .debs/, build the
# package with CUDA, run the kernel and proxy-step benchmarks, then the CUDA tests.
#
# Prepare here (Debian):  mkdir -p .debs && (cd .debs && apt-get download \
#     libx265-199 libx265-dev libde265-0 libde265-dev libnuma1)
# Run there (carry .debs): bash benchmarks/gpu_check.sh   (logs under $OUT if set)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/npp_ext_gpu}
mkdir -p "$out"
prefix=/tmp/npp_ext_deps
rm -rf "$prefix" && mkdir -p "$prefix"
for deb in .debs/*.deb; do dpkg -x "$deb" "$prefix"; done
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
nvcc --version | tail -2 | tee "$out/nvcc.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/npp_ext_site \
    -C cmake.define.BPG_DEPS_PREFIX="$prefix" -C cmake.define.NPP_EXT_CUDA=ON \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES=90 . 2>&1 | tail -5
export PYTHONPATH=/tmp/npp_ext_site
cd /tmp  # import the built package, not the source tree
repo=$OLDPWD
# One lease is short: a failing step is logged and the next still runs, each under its own
# time limit; the benchmarks (the owed numbers) go first, then the CUDA tests.
status=0
step() {  # step NAME SECONDS COMMAND...: log to $out/NAME.txt, time and result to summary.txt
    local name=$1 limit=$2 t0=$SECONDS rc=0
    shift 2
    PYTHONUNBUFFERED=1 timeout "$limit" "$@" >"$out/$name.txt" 2>&1 || rc=$?
    tail -25 "$out/$name.txt"
    echo "$name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}
step kernels 240 python3 "$repo/benchmarks/kernels.py" --device cuda
step proxy_step 120 python3 "$repo/benchmarks/proxy_step.py" --device cuda
# Only the tests that need a GPU (marked by tests/conftest.py); CI runs the others.
step tests 300 python3 -m pytest -q -rfE -p no:cacheprovider -o faulthandler_timeout=240 -m gpu \
    "$repo/tests/test_ops.py" "$repo/tests/test_autograd.py" "$repo/tests/test_models.py"
exit $status
