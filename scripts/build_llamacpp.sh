#!/usr/bin/env bash
# Build llama.cpp (pinned: the tree vendored in the llama-cpp-python 0.3.36 sdist) and convert the
# bundled draft pair to GGUF, into ${SPECDEC_CACHE:-~/.cache/specdec-diag}/llamacpp-0.3.36/.
#
# Usage: scripts/build_llamacpp.sh [PYTHON]   (PYTHON: the interpreter with numpy+torch, default .venv)
#        scripts/build_llamacpp.sh --config   (print the build options the stamp must record)
#
# Why this shape: the build takes minutes on a small machine, so the result is cached per machine and
# reused when its stamp is present. Everything is built in a temporary sibling directory and renamed
# into place as the last step, so an interrupted build is never mistaken for a finished one.
# The only download is the sdist, through pip. Missing cmake/compilers: one line, exit 0 (the
# llamacpp tests then skip with that reason) unless SPECDEC_REQUIRE_LLAMACPP=1.
set -euo pipefail

VERSION=0.3.36
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$HERE/.venv/bin/python}"
CACHE="${SPECDEC_CACHE:-$HOME/.cache/specdec-diag}"
DEST="$CACHE/llamacpp-$VERSION"
STAMP="$DEST/BUILD_OK"
JOBS="${SPECDEC_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# Portable x86-64 (AVX2/FMA/F16C) instead of -march=native: a native build on a CPU that reports AMX
# emits AMX tile instructions for the quantized types, and where the kernel does not grant AMX state
# (containers, VMs) llama-server dies with SIGILL on the q8_0/q4_0 target. The options are recorded in
# the stamp: a build made with other options is rebuilt, not reused.
CMAKE_OPTS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
if [[ "$(uname -m)" != x86_64 ]]; then
  CMAKE_OPTS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF)
fi
CONFIG="${CMAKE_OPTS[*]}"
if [[ "${1:-}" == "--config" ]]; then echo "$CONFIG"; exit 0; fi

PAIR="$HERE/specdec_diag/assets/pair"
# The GGUF files are made from the bundled pair: the stamp records which pair (sha256 over its model
# and tokenizer files; the same key as specdec_diag.capture.llamacpp.pair_key), so a retrained pair is
# converted again while the binaries are reused.
pair_key() {
  (cd "$PAIR" && find target draft -type f \( -name '*.safetensors' -o -name '*.json' \) | LC_ALL=C sort \
    | while read -r f; do sha256sum "$f"; done) | sha256sum | cut -c1-16
}
CONVERT_ONLY=0
if [[ -f "$STAMP" ]] && grep -qxF "config=$CONFIG" "$STAMP"; then
  KEY="$(pair_key)"
  if grep -qxF "pair=$KEY" "$STAMP"; then
    echo "llama.cpp $VERSION: reusing $DEST"
    exit 0
  fi
  echo "llama.cpp $VERSION: reusing the binaries in $DEST; the bundled pair changed, converting it again"
  CONVERT_ONLY=1
fi

missing=()
for tool in cmake cc c++ tar; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if ((${#missing[@]})); then
  echo "llama.cpp $VERSION not built: missing ${missing[*]} (install cmake and gcc/g++); llamacpp tests will skip." >&2
  [[ "${SPECDEC_REQUIRE_LLAMACPP:-0}" == 1 ]] && exit 1
  exit 0
fi
if ! "$PY" -c "import numpy, torch, safetensors" >/dev/null 2>&1; then
  echo "llama.cpp $VERSION not built: $PY lacks numpy/torch/safetensors (run make install first)." >&2
  exit 1
fi

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/.llamacpp-$VERSION.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
OUT="$WORK/out"
mkdir -p "$OUT/bin" "$OUT/pair"
t0=$(date +%s)

# 1. the sdist (kept in the cache so a rebuild does not download again)
SDIST_DIR="$CACHE/sdist"
SDIST="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
  mkdir -p "$SDIST_DIR"
  "$PY" -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$WORK/dl"
  mv "$WORK/dl/llama_cpp_python-$VERSION.tar.gz" "$SDIST"
fi
tar xzf "$SDIST" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

convert_pair() {  # $1: output dir, $2: llama-quantize
  for m in target draft; do
    PYTHONPATH="$SRC:$SRC/gguf-py" "$PY" "$HERE/scripts/convert_pair_gguf.py" "$SRC" "$PAIR/$m" "$1/$m.gguf" \
      >"$WORK/convert-$m.log" 2>&1 || { tail -30 "$WORK/convert-$m.log" >&2; exit 1; }
  done
  for q in q8_0 q4_0; do
    "$2" "$1/target.gguf" "$1/target-$q.gguf" "$q" \
      >"$WORK/quantize-$q.log" 2>&1 || { tail -30 "$WORK/quantize-$q.log" >&2; exit 1; }
  done
}

if ((CONVERT_ONLY)); then  # new GGUF files next to the old, then swapped in; the stamp is replaced last
  # (until then it names the old pair: an interrupted swap is converted again, never rebuilt)
  convert_pair "$OUT/pair" "$DEST/bin/llama-quantize"
  grep -v '^pair=' "$STAMP" >"$OUT/BUILD_OK"
  echo "pair=$KEY" >>"$OUT/BUILD_OK"
  rm -rf "$DEST/pair.old"
  [[ -d "$DEST/pair" ]] && mv "$DEST/pair" "$DEST/pair.old"
  mv "$OUT/pair" "$DEST/pair"
  rm -rf "$DEST/pair.old"
  mv "$OUT/BUILD_OK" "$STAMP"
  echo "llama.cpp $VERSION: pair converted again in $(($(date +%s) - t0)) s: $DEST"
  exit 0
fi

# 2. static binaries (no rpath into the temp dir)
cmake -S "$SRC" -B "$WORK/build" "${CMAKE_OPTS[@]}" >"$WORK/cmake.log" 2>&1 \
  || { tail -30 "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" -j "$JOBS" --target llama-server llama-speculative llama-quantize \
  >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
for b in llama-server llama-speculative llama-quantize; do cp "$WORK/build/bin/$b" "$OUT/bin/"; done
t1=$(date +%s)

# 3. the bundled pair as GGUF: f32 (lossless from the fp16 safetensors) and a quantized target
convert_pair "$OUT/pair" "$OUT/bin/llama-quantize"
t2=$(date +%s)

cp "$WORK"/*.log "$OUT/" 2>/dev/null || true
cat >"$OUT/BUILD_OK" <<EOF
version=$VERSION
quants=q8_0,q4_0
config=$CONFIG
pair=$(pair_key)
build_seconds=$((t1 - t0))
convert_seconds=$((t2 - t1))
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
rm -rf "$DEST"
mv "$OUT" "$DEST"
echo "llama.cpp $VERSION built in $((t1 - t0)) s, pair converted in $((t2 - t1)) s: $DEST"
