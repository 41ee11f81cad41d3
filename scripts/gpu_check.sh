#!/usr/bin/env bash
# The GPU check: the test suite on CUDA, then the benchmarks' GPU modes, in one command
# (well under 8 minutes on one H200), ending with one table.
#
#   bash scripts/gpu_check.sh            on a machine with a CUDA GPU and torch
#   bash scripts/gpu_check.sh --fetch    here, before: download the wheels a bare GPU image lacks
#                                        (pypose, qdldl, small_gicp; Python 3.12) into .whl/ to carry there
#   bash scripts/gpu_check.sh --bare     here, on the CPU: the suite in a new environment holding only
#                                        what the GPU image holds and what --fetch carries (what would
#                                        fail there for a missing package fails here first)
#
# On a GPU machine that has no network, the packages robojac needs beyond torch/numpy/scipy/
# matplotlib come from .whl/ (installed into /tmp/robojac_site). Open3D (hundreds of MB) and
# Pinocchio are not carried: the tests that need them skip there, and every GPU path runs
# without them. Writes its logs to $OUT (or gpu_check_out/) when set.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
carried="pypose qdldl small_gicp"  # robojac's needs that the GPU image lacks (its list: device KINDS.md)
if [ "${1:-}" = "--bare" ]; then
  env="${ROBOJAC_BARE_VENV:-/tmp/robojac_bare}"
  [ -x "$env/bin/python" ] || "$py" -m venv "$env" || exit 3
  "$env/bin/python" -m pip install -q "torch==${ROBOJAC_TORCH:-2.13.0}" numpy scipy matplotlib pytest hypothesis \
    opencv-python-headless pyyaml || exit 3
  "$env/bin/python" -m pip install -q --no-deps $carried || exit 3
  PYTHONPATH="$PWD" OMP_WAIT_POLICY=PASSIVE MPLBACKEND=Agg "$env/bin/python" -m pytest -q -p no:cacheprovider tests
  exit $?
fi
if [ "${1:-}" = "--fetch" ]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $carried
  ls -la .whl
  exit 0
fi
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/robojac_site .whl/*.whl || exit 3
  export PYTHONPATH="/tmp/robojac_site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" OMP_WAIT_POLICY=PASSIVE MPLBACKEND=Agg PYTHONUNBUFFERED=1
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')" || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"

start=$(date +%s)
"$py" -m pytest -q -p no:cacheprovider --device cuda -rs --junitxml="$out/suite.xml" tests \
  2>&1 | tee "$out/suite.log"
suite=$?
suite_line=$(grep -E '^[0-9]+ (passed|failed)|(passed|failed|error).* in [0-9.]+s' "$out/suite.log" | tail -1)
"$py" benchmarks/gpu.py --device cuda 2>&1 | tee "$out/bench.log"
bench=$?

echo
echo "## GPU check ($(cat "$out/gpu.txt" 2>/dev/null), $(( $(date +%s) - start )) s)"
echo
echo "| case | CPU (this machine) | cuda | speed-up | check |"
echo "|---|---|---|---|---|"
echo "| pytest --device cuda | - | - | - | ${suite_line:-no summary, see suite.log} (exit $suite) |"
grep -E '^\| (FK|IK|ICP|PGO|centre|collision|trajopt|solve_balanced)' "$out/bench.log" || echo "| benchmarks/gpu.py | - | - | - | no table (exit $bench), see bench.log |"
[ "$suite" -eq 0 ] && [ "$bench" -eq 0 ]
