#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...]: fuzz the parsers of outside input.
#
# Builds replfs-fuzz with libFuzzer and AddressSanitizer into .build-fuzz and
# runs each target (ltx, frames, http, config; all by default) for SECONDS
# (default 30), starting from its seed corpus in Tests/fuzz/TARGET. Inputs it
# finds go to a scratch corpus, so the committed seeds stay as they are.
# Fails on a crash, an input that takes more than 10 s (a hang), a leak or
# more than 2 GiB of memory; the input is kept as .build-fuzz/crash-TARGET-*
# (replay it with `replfs-fuzz TARGET FILE` from a normal build).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(ltx frames http config)
build=.build-fuzz
swift build --product replfs-fuzz --build-path "$build" -j "$(nproc)" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -D -Xswiftc FUZZING 2>&1 | grep -E "error|warning: unre|Compiling replfs|Build complete" || true
binary=$(swift build --build-path "$build" --show-bin-path)/replfs-fuzz
[[ -x $binary ]] || { echo "fuzz: the build failed" >&2; exit 1; }

status=0
for target in "${targets[@]}"; do
  scratch=$(mktemp -d)
  log=$build/fuzz-$target.log
  set +e
  # Swift's own backtracer is off: under AddressSanitizer it reports itself
  # instead of the fault (libFuzzer prints the stack and keeps the input).
  SWIFT_BACKTRACE=enable=no REPLFS_FUZZ_TARGET=$target "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/crash-$target-" "$scratch" "Tests/fuzz/$target" >"$log" 2>&1
  code=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  corpus=$(find "$scratch" -type f | wc -l)
  rm -rf "$scratch"
  if [[ $code -eq 0 ]]; then
    echo "fuzz $target: ${runs:-?} inputs in ${seconds}s (${speed:-?} exec/s), $corpus new corpus entries, no crash, hang or leak"
  else
    echo "fuzz $target: FAILED (exit $code); the log is $log:" >&2
    grep -E "ERROR|SUMMARY|Test unit written|==[0-9]+==" "$log" | head -20 >&2
    status=1
  fi
done
exit $status
