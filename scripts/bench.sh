#!/usr/bin/env bash
# make bench: ReplFS against native SQLite on the same disk, side by side in
# one run (the machine is shared and noisy: absolute rates drift, ratios hold).
# Writes the report to stdout and to .build/bench.md.
set -euo pipefail
BIN=${REPLFS_BIN_DIR:?REPLFS_BIN_DIR is set by make bench}
TOOLS=${REPLFS_TOOLS:?REPLFS_TOOLS is set by make bench}
ROOT=${BENCH_DIR:-/var/tmp/replfs-bench}     # must be on the same disk as native
SECONDS_PER_RUN=${BENCH_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-3}
DB_MIB=${BENCH_DB_MIB:-1024}
REPORT=$(pwd)/.build/bench.md

PID=""
stop_node() {
  if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID"
    # A clean stop writes out every LTX file still in the spool first.
    while kill -0 "$PID" 2>/dev/null; do sleep 0.1; done
  fi
  PID=""
  if grep -q " $ROOT/mnt " /proc/self/mountinfo; then umount -l "$ROOT/mnt"; fi
}
trap stop_node EXIT

start_node() {
  "$BIN/replfsd" mount --config "$ROOT/replfsd.yml" --log-level warning 2>>"$ROOT/replfsd.log" &
  PID=$!
  for _ in $(seq 600); do
    if grep -q " $ROOT/mnt " /proc/self/mountinfo && stat -f "$ROOT/mnt" >/dev/null 2>&1; then return; fi
    kill -0 "$PID" 2>/dev/null || { cat "$ROOT/replfsd.log"; exit 1; }
    sleep 0.1
  done
  echo "replfsd did not mount"; exit 1
}

now() { date +%s.%N; }

stop_node
rm -rf "$ROOT"
mkdir -p "$ROOT/native" "$ROOT/mnt"
cat >"$ROOT/replfsd.yml" <<YAML
node: bench
mount: $ROOT/mnt
data: $ROOT/data
YAML
start_node

{
echo "## make bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), $(df -T "$ROOT" | awk 'NR==2 {print $2}') at $ROOT)"
echo
echo "One row per transaction, BEGIN IMMEDIATE; ${SECONDS_PER_RUN}s per run, median of $ROUNDS interleaved rounds."
echo
"$BIN/replfs-testkit" bench --native "$ROOT/native" --mounted "$ROOT/mnt" --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS"
echo
echo "### speedtest1 --size 10 (wall time, median of $ROUNDS interleaved rounds)"
echo
echo "| journal | native s | replfs s | ratio | target |"
echo "|---|---:|---:|---:|---:|"
for journal in wal delete; do
  native=(); mounted=()
  for round in $(seq "$ROUNDS"); do
    for where in native mnt; do
      rm -f "$ROOT/$where"/st.db*
      start=$(now)
      "$TOOLS/speedtest1" --size 10 --journal "$journal" "$ROOT/$where/st.db" >/dev/null
      elapsed=$(echo "$(now) - $start" | bc -l)
      if [[ $where == native ]]; then native+=("$elapsed"); else mounted+=("$elapsed"); fi
    done
  done
  n=$(printf '%s\n' "${native[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
  m=$(printf '%s\n' "${mounted[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
  ratio=$(echo "$m / $n" | bc -l)
  target="-"; [[ $journal == wal ]] && target="<= 1.50x"
  printf '| %s | %.3f | %.3f | %.2fx | %s |\n' "$journal" "$n" "$m" "$ratio" "$target"
done
rm -f "$ROOT"/native/st.db* "$ROOT"/mnt/st.db*
echo

echo "### Memory: replfsd serving a ${DB_MIB} MiB database"
echo
# Build the database outside the daemon, in its files directory; the next
# start snapshots it (recovery), then it is scanned and written through the mount.
stop_node
sqlite3 "$ROOT/data/files/big.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < $(( DB_MIB * 1024 * 1024 / 1100 )))
  INSERT INTO t(v) SELECT randomblob(1000) FROM n; PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
size=$(stat -c %s "$ROOT/data/files/big.db")
start=$(now)
start_node
snapshot=$(echo "$(now) - $start" | bc -l)
rss_start=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
scan_start=$(now)
sqlite3 "$ROOT/mnt/big.db" "SELECT count(*), sum(length(v)) FROM t" >/dev/null
scan=$(echo "$(now) - $scan_start" | bc -l)
"$BIN/replfs-testkit" workload --db "$ROOT/mnt/big.db" --journal-mode wal --transactions 2000 >/dev/null
rss_end=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
echo "| database | startup (recovery + snapshot) | full scan through the mount | RSS after start | RSS after scan + 2000 tx | peak RSS |"
echo "|---:|---:|---:|---:|---:|---:|"
printf '| %d MiB | %.1f s | %.1f s | %d MiB | %d MiB | %d MiB |\n' $(( size / 1048576 )) "$snapshot" "$scan" $(( rss_start / 1024 )) $(( rss_end / 1024 )) $(( hwm / 1024 ))
echo
echo "Command: \`make bench\` (BENCH_SECONDS=$SECONDS_PER_RUN BENCH_ROUNDS=$ROUNDS BENCH_DB_MIB=$DB_MIB)"
} | tee "$REPORT"
stop_node
rm -rf "$ROOT"
