#!/usr/bin/env bash
# Install robojac into a virtual environment (default .venv) on a fresh Debian/Ubuntu machine.
#   bash scripts/setup.sh          the library (what the demo needs)
#   bash scripts/setup.sh dev      + pytest, Pinocchio, MuJoCo, OpenCV and evo (what the tests need)
#   bash scripts/setup.sh bench    + the peers measured in benchmarks/
# ROBOJAC_VENV picks another environment folder.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-core}"
venv="${ROBOJAC_VENV:-.venv}"

# Open3D loads the system library libusb-1.0 when imported.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  echo "[robojac setup] installing libusb-1.0-0 (needed by open3d)"
  if [ "$(id -u)" = 0 ]; then sudo_=""; elif command -v sudo >/dev/null; then sudo_="sudo"; else
    echo "[robojac setup] open3d needs libusb-1.0-0: run 'apt-get install libusb-1.0-0' as root" >&2; exit 1
  fi
  $sudo_ apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get install -y -q libusb-1.0-0 >/dev/null; }
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip >/dev/null
# CPU torch first: a bare `torch` requirement pulls a CUDA build of several GB.
# An environment that already has a torch keeps it.
if ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "[robojac setup] installing torch ${ROBOJAC_TORCH:-2.13.0} (CPU wheel)"
  "$py" -m pip install -q "torch==${ROBOJAC_TORCH:-2.13.0}"
fi
case "$extra" in
  core) spec="." ;;
  dev) spec=".[dev]" ;;
  bench) spec=".[dev,bench]" ;;
  *) echo "usage: bash scripts/setup.sh [core|dev|bench]" >&2; exit 2 ;;
esac
echo "[robojac setup] installing robojac ($extra) into $venv"
"$py" -m pip install -q -e "$spec"
