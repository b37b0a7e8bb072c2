#!/bin/sh
# Line coverage of one fuzz harness over its inputs (make fuzz-coverage).
#
#   coverage.sh BIN SECONDS CORPUS_DIR TARGET_FILE...
#
# BIN is a harness built with -fprofile-instr-generate -fcoverage-mapping.
# It replays test/fuzz/seeds/<name> and CORPUS_DIR (when `make fuzz` left
# one) once each (-runs=0), for at most SECONDS; the raw profile is merged
# with $LLVM_PROFDATA and $LLVM_COV reports the TARGET_FILEs (file names,
# looked up under src/). Prints the report and one summary line.
set -eu
bin=$1 seconds=$2 corpus=$3
shift 3
name=$(basename "$bin")
dir=$(dirname "$bin")
seeds=test/fuzz/seeds/$name
inputs=$seeds
n_corpus=0
if [ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ]; then
  inputs="$inputs $corpus"
  n_corpus=$(ls "$corpus" | wc -l)
fi
files=""
for f in "$@"; do
  path=$(find src -name "$f" | head -n 1)
  [ -n "$path" ] || { echo "coverage.sh: $f not found under src/" >&2; exit 1; }
  files="$files $path"
done
rm -f "$dir/$name.profraw" "$dir/$name.profdata"
# shellcheck disable=SC2086 # $inputs and $files are lists of paths without spaces
LLVM_PROFILE_FILE="$dir/$name.profraw" timeout "$seconds" "$bin" -runs=0 -close_fd_mask=3 $inputs \
  > "$dir/$name.log" 2>&1 || { tail -n 30 "$dir/$name.log"; exit 1; }
"$LLVM_PROFDATA" merge -sparse -o "$dir/$name.profdata" "$dir/$name.profraw"
echo "== $name: $(ls "$seeds" | wc -l) seeds, $n_corpus corpus inputs"
printf "  %-32s %7s %7s %8s\n" file lines missed covered
# shellcheck disable=SC2086
"$LLVM_COV" report "$bin" -instr-profile="$dir/$name.profdata" $files \
  | awk '$1 != "Filename" && !/^-/ && NF >= 10 { sub(/.*\//, "", $1); printf "  %-32s %7s %7s %8s\n", $1, $8, $9, $10 }'
