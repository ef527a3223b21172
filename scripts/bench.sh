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
SNAP_MIB=${BENCH_SNAPSHOT_MIB:-256}
FAILOVER_RUNS=${BENCH_FAILOVER_RUNS:-10}
HANDOFF_RUNS=${BENCH_HANDOFF_RUNS:-6}
AFTER_HANDOFF_RUNS=${BENCH_AFTER_HANDOFF_RUNS:-5}
REPORT=$(pwd)/.build/bench.md
# BENCH_ONLY="local memory replication failover growth tls sync backup" picks sections (default: all).
# growth: GROWTH_TRANSACTIONS (1,000,000), GROWTH_STEP (100,000), GROWTH_RETENTION (1m).
want() { [[ -z ${BENCH_ONLY:-} || " $BENCH_ONLY " == *" $1 "* ]]; }

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

# The burst rate: the median of three 5,000-transaction runs, each on a new
# database after the node has drained (one 0.6 s run is too noisy to compare
# a 60 s run against). Prints the rate; $1 is a directory in a mount.
burst_rate() {
  local rates=() i
  for i in 1 2 3; do
    sleep 2
    rates+=("$("$BIN/replfs-testkit" rows --db "$1/burst-$i.db" --transactions 5000 | awk '/^done/ {print $3}')")
    rm -f "$1/burst-$i.db" "$1/burst-$i.db-wal" "$1/burst-$i.db-shm"
  done
  printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p
}

stop_node
rm -rf "$ROOT"
mkdir -p "$ROOT/native" "$ROOT/mnt"
cat >"$ROOT/replfsd.yml" <<YAML
node: bench
mount: $ROOT/mnt
data: $ROOT/data
admin: {socket: $ROOT/replfsd.sock}
YAML
start_node

{
echo "## make bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), $(df -T "$ROOT" | awk 'NR==2 {print $2}') at $ROOT)"
echo
if want local; then
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
one_burst=$(burst_rate "$ROOT/mnt")
read -r _ _ one_sustained _ < <("$BIN/replfs-testkit" rows --db "$ROOT/mnt/sustained.db" --seconds "${SUSTAINED_SECONDS:-60}")
echo "One node, one-row WAL/NORMAL transactions for ${SUSTAINED_SECONDS:-60} s against a burst (median of three 5,000-transaction runs on new databases, \`replfs-testkit rows\`):"
echo
echo "| ${SUSTAINED_SECONDS:-60} s sustained /s | burst /s | sustained / burst | target |"
echo "|---:|---:|---:|---:|"
printf '| %d | %d | %.2fx | >= 0.80x |\n' "$one_sustained" "$one_burst" "$(echo "$one_sustained / $one_burst" | bc -l)"
rm -f "$ROOT"/mnt/sustained.db*
echo
fi

if want memory; then
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
fi
stop_node

if want replication; then
echo "### Replication: a primary and two replicas on this machine (loopback)"
echo
cluster_start() {
  CLUSTER_PIDS=()
  for name in a b c; do
    "$BIN/replfsd" mount --config "$ROOT/cluster/$name/replfsd.yml" --log-level warning >/dev/null 2>>"$ROOT/cluster/$name/log" &
    CLUSTER_PIDS+=($!)
  done
  for name in a b c; do
    for _ in $(seq 300); do
      grep -q " $ROOT/cluster/$name/mnt " /proc/self/mountinfo && stat -f "$ROOT/cluster/$name/mnt" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
}
cluster_node_start() {
  "$BIN/replfsd" mount --config "$ROOT/cluster/$1/replfsd.yml" --log-level warning >/dev/null 2>>"$ROOT/cluster/$1/log" &
  echo $!
}
stop_pid() { kill "$1" 2>/dev/null || true; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; }
rm -rf "$ROOT/cluster"
echo "bench-token-$RANDOM$RANDOM" >"$ROOT/token"
chmod 600 "$ROOT/token"
port=$(( 21000 + RANDOM % 2000 ))
for name in a b c; do
  mkdir -p "$ROOT/cluster/$name"
  cat >"$ROOT/cluster/$name/replfsd.yml" <<YAML
node: node-$name
mount: $ROOT/cluster/$name/mnt
data: $ROOT/cluster/$name/data
admin: {socket: $ROOT/cluster/$name/replfsd.sock}
replication:
  listen: 127.0.0.1:$(( port + $(printf '%d' "'$name") - 97 ))
  token-file: $ROOT/token
lease:
  static:
    primary: node-a
    peers: {node-a: 127.0.0.1:$port, node-b: 127.0.0.1:$(( port + 1 )), node-c: 127.0.0.1:$(( port + 2 ))}
YAML
done
cluster_start
lag=$("$BIN/replfs-testkit" lag --primary "$ROOT/cluster/a/mnt/lag.db" --replica "$ROOT/cluster/b/mnt/lag.db" --transactions 10000)
echo "Replication lag, COMMIT on the primary to the row visible to a reader on a replica, 10,000 transactions one at a time (WAL):"
echo
echo "| p50 | p90 | p99 | max | target |"
echo "|---:|---:|---:|---:|---:|"
python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('| %.2f ms | %.2f ms | %.2f ms | %.2f ms | p99 < 5 ms |' % (d['p50_ms'], d['p90_ms'], d['p99_ms'], d['max_ms']))" "$lag"
echo
# Reads on a replica of a database larger than SQLite's cache, while the primary commits.
echo "Point selects on a replica (200,000 rows, 37 MiB, larger than SQLite's cache: reads come from the kernel's page cache), against a native copy, median of $ROUNDS:"
echo
"$BIN/replfs-testkit" replica-reads --primary "$ROOT/cluster/a/mnt/reads.db" --replica "$ROOT/cluster/b/mnt/reads.db" \
  --native "$ROOT/native/replica-reads.db" --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS"
rm -f "$ROOT/native/replica-reads.db"*
echo
# Primary write throughput with both replicas following, and with them stopped.
attached=(); detached=()
for round in $(seq "$ROUNDS"); do
  rate=$("$BIN/replfs-testkit" bench --native "$ROOT/native" --mounted "$ROOT/cluster/a/mnt" --seconds "$SECONDS_PER_RUN" --rounds 1 --scenarios wal-normal | tail -1 | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  attached+=("$rate")
  stop_pid "${CLUSTER_PIDS[1]}"; stop_pid "${CLUSTER_PIDS[2]}"
  rate=$("$BIN/replfs-testkit" bench --native "$ROOT/native" --mounted "$ROOT/cluster/a/mnt" --seconds "$SECONDS_PER_RUN" --rounds 1 --scenarios wal-normal | tail -1 | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  detached+=("$rate")
  CLUSTER_PIDS[1]=$(cluster_node_start b); CLUSTER_PIDS[2]=$(cluster_node_start c)
  sleep 3
done
a=$(printf '%s\n' "${attached[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
d=$(printf '%s\n' "${detached[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
echo "Primary write throughput (WAL, NORMAL, one row per transaction), replicas following vs stopped, median of $ROUNDS:"
echo
echo "| with 2 replicas /s | without /s | ratio | target |"
echo "|---:|---:|---:|---:|"
printf '| %d | %d | %.2fx | >= 0.90x |\n' "$a" "$d" "$(echo "$a / $d" | bc -l)"
echo
# Snapshot catch-up: a new replica joins a primary holding a large database.
sqlite3 "$ROOT/cluster/a/mnt/snap.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < $(( SNAP_MIB * 1024 * 1024 / 1100 )))
  INSERT INTO t(v) SELECT randomblob(1000) FROM n;" >/dev/null
size=$(stat -c %s "$ROOT/cluster/a/data/files/snap.db")
stop_pid "${CLUSTER_PIDS[2]}"
rm -rf "$ROOT/cluster/c/data"
base_primary=$(awk '/VmRSS/ {print $2}' /proc/${CLUSTER_PIDS[0]}/status)
start=$(now)
CLUSTER_PIDS[2]=$(cluster_node_start c)
peak_primary=0; peak_replica=0
# The primary's position of snap.db (reported by its status), once it settles.
snap_txid() { "$BIN/replfsd" status --json --config "$ROOT/cluster/$1/replfsd.yml" 2>/dev/null | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["databases"] if x["name"]=="snap.db"]
print(d[0]["txid"] if d else "")' 2>/dev/null || true; }
target=""
while true; do
  newest=$(snap_txid a)
  [[ -n $newest && $newest == "$target" ]] && break
  target=$newest
  sleep 0.5
done
while true; do
  for i in 0 2; do
    rss=$(awk '/VmRSS/ {print $2}' /proc/${CLUSTER_PIDS[$i]}/status 2>/dev/null || echo 0)
    if [[ $i == 0 && $rss -gt $peak_primary ]]; then peak_primary=$rss; fi
    if [[ $i == 2 && $rss -gt $peak_replica ]]; then peak_replica=$rss; fi
  done
  current=$(snap_txid c)
  [[ -n $current && $current == "$target" ]] && break
  sleep 0.1
done
elapsed=$(echo "$(now) - $start" | bc -l)
echo "Snapshot catch-up: a new replica joins a primary holding a $(( size / 1048576 )) MiB database:"
echo
echo "| database | time to the primary's position | throughput | RSS primary before | peak RSS primary | peak RSS replica |"
echo "|---:|---:|---:|---:|---:|---:|"
printf '| %d MiB | %.1f s | %.0f MB/s | %d MiB | %d MiB | %d MiB |\n' $(( size / 1048576 )) "$elapsed" "$(echo "$size / 1000000 / $elapsed" | bc -l)" $(( base_primary / 1024 )) $(( peak_primary / 1024 )) $(( peak_replica / 1024 ))
for pid in "${CLUSTER_PIDS[@]}"; do stop_pid "$pid"; done
echo
fi
if want failover; then
echo "### Failover: three nodes with an etcd lease (TTL 2 s) on this machine (loopback)"
echo
rm -rf "$ROOT/failover"; mkdir -p "$ROOT/failover"
F=$ROOT/failover
echo "bench-token-$RANDOM$RANDOM" >"$F/token"
chmod 600 "$F/token"
fport=$(( 24000 + RANDOM % 2000 ))
etcd --name bench --data-dir "$F/etcd" --listen-client-urls "http://127.0.0.1:$(( fport + 10 ))" \
  --advertise-client-urls "http://127.0.0.1:$(( fport + 10 ))" --listen-peer-urls "http://127.0.0.1:$(( fport + 11 ))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$(( fport + 11 ))" --initial-cluster "bench=http://127.0.0.1:$(( fport + 11 ))" \
  >"$F/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$(( fport + 10 ))/health" >/dev/null && break; sleep 0.1; done
declare -A FPID
for name in a b c; do
  mkdir -p "$F/$name"
  cat >"$F/$name/replfsd.yml" <<YAML
node: node-$name
mount: $F/$name/mnt
data: $F/$name/data
admin: {socket: $F/$name/replfsd.sock}
replication:
  listen: 127.0.0.1:$(( fport + $(printf '%d' "'$name") - 97 ))
  token-file: $F/token
lease:
  type: etcd
  etcd: {endpoints: ["http://127.0.0.1:$(( fport + 10 ))"], key: /replfs/bench/primary, ttl: 2s}
YAML
done
fstart() {
  "$BIN/replfsd" mount --config "$F/$1/replfsd.yml" --log-level "${BENCH_LOG_LEVEL:-warning}" >/dev/null 2>>"$F/$1/log" &
  FPID[$1]=$!
  for _ in $(seq 300); do grep -q " $F/$1/mnt " /proc/self/mountinfo && stat -f "$F/$1/mnt" >/dev/null 2>&1 && return; sleep 0.05; done
}
frole() { "$BIN/replfsd" status --json --config "$F/$1/replfsd.yml" 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["role"], (d.get("upstream") or {}).get("connected", False))' 2>/dev/null || echo "down False"; }
# Waits until one node is primary and the two others follow it, connected; prints the primary.
fsettled() {
  for _ in $(seq 600); do
    local primary="" followers=0
    for name in a b c; do
      case "$(frole "$name")" in
        "primary "*) primary=$name ;;
        "replica True") followers=$(( followers + 1 )) ;;
      esac
    done
    if [[ -n $primary && $followers == 2 ]]; then echo "$primary"; return; fi
    sleep 0.05
  done
  echo none
}
# kill -9 NODE; sets FTIME to the seconds until a write is acknowledged by
# another node (the ack file's column 2 is the mount's index, 3 the time).
fkill_timed() {
  local t0 index last
  t0=$(now)
  kill -9 "${FPID[$1]}"
  wait "${FPID[$1]}" 2>/dev/null || true
  index=$(( $(printf '%d' "'$1") - 97 ))
  while true; do
    last=$(awk -v t0="$t0" -v dead="$index" '$2 != dead && $3 > t0 {print $3; exit}' "$F/acks")
    [[ -n $last ]] && break
    sleep 0.005
  done
  FTIME=$(echo "$last - $t0" | bc -l)
}
# A table row of min / median / max seconds over the arguments.
ftimes_table() {
  local sorted
  sorted=$(printf '%s\n' "$@" | sort -n)
  echo "| runs | min | median | max | target |"
  echo "|---:|---:|---:|---:|---:|"
  printf '| %d | %.2f s | %.2f s | %.2f s | max <= 3 s |\n' "$#" "$(echo "$sorted" | head -1)" "$(echo "$sorted" | sed -n "$(( ($# + 1) / 2 ))p")" "$(echo "$sorted" | tail -1)"
}
# A writer over every mount (it follows the primary), acknowledging into $F/acks.
fwriter_start() {
  rm -f "$F/acks" "$F/stop"
  "$BIN/replfs-testkit" writer --mounts "$mounts" --seconds 100000 --stop-file "$F/stop" --ack-file "$F/acks" >"$F/writer.json" 2>&1 &
  WRITER=$!
}
fwriter_stop() { touch "$F/stop"; wait "$WRITER" || true; }
# The first node that is not NODE.
fother() { for name in a b c; do [[ $name != "$1" ]] && echo "$name" && return; done; }
for name in a b c; do fstart "$name"; done
fsettled >/dev/null
mounts="$F/a/mnt,$F/b/mnt,$F/c/mnt"
# FAILOVER_RUNS crashes of the primary under the writer; the times in FTIMES.
fcrash_series() {
  FTIMES=()
  fwriter_start
  for run in $(seq "$FAILOVER_RUNS"); do
    primary=$(fsettled)
    sleep 1
    fkill_timed "$primary"
    FTIMES+=("$FTIME")
    fstart "$primary"
  done
  fwriter_stop
}
# "LOST TOTAL": acknowledged writes in $F/acks missing from NODE's database.
fmissing() {
  python3 - "$F/acks" "$F/$1/mnt/app.db" <<'PY'
import sqlite3, sys
acked = {int(line.split()[0]) for line in open(sys.argv[1]) if line.strip()}
stored = {row[0] for row in sqlite3.connect(sys.argv[2]).execute("SELECT seq FROM acks")}
print(len(acked - stored), len(acked))
PY
}
fcrash_series
crash=("${FTIMES[@]}")
echo "Crash failover, \`kill -9\` of the primary's replfsd under a write load, to the first write acknowledged by the new primary ($FAILOVER_RUNS runs; the killed node restarts and rejoins between runs):"
echo
ftimes_table "${crash[@]}"
echo
gaps=(); lost=0; total=0
for run in $(seq "$HANDOFF_RUNS"); do
  primary=$(fsettled)
  fwriter_start
  sleep 1
  if (( run % 2 == 1 )); then
    target=$(fother "$primary")
    "$BIN/replfsd" promote --config "$F/$target/replfsd.yml" >/dev/null
  else
    "$BIN/replfsd" demote --config "$F/$primary/replfsd.yml" >/dev/null
  fi
  sleep 1
  fwriter_stop
  gaps+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_gap_ms"])' "$F/writer.json")")
  missing=$(fmissing "$(fsettled)")
  lost=$(( lost + ${missing%% *} )); total=$(( total + ${missing##* } ))
done
sorted=$(printf '%s\n' "${gaps[@]}" | sort -n)
echo "Planned handoff under continuous writes (\`replfsd promote\` and \`replfsd demote\` alternately, $HANDOFF_RUNS runs): longest time without an acknowledged write, and acknowledged transactions missing afterwards:"
echo
echo "| runs | median gap | max gap | acknowledged | lost | target |"
echo "|---:|---:|---:|---:|---:|---:|"
printf '| %d | %d ms | %d ms | %d | %d | < 500 ms, 0 lost |\n' "$HANDOFF_RUNS" "$(echo "$sorted" | sed -n "$(( (HANDOFF_RUNS + 1) / 2 ))p")" "$(echo "$sorted" | tail -1)" "$total" "$lost"
echo
# A crash of the new primary half a second after a switchover: the other
# nodes are still in the handoff's hold-back, which must end as soon as the
# new primary holds the key.
after=()
for run in $(seq "$AFTER_HANDOFF_RUNS"); do
  primary=$(fsettled)
  fwriter_start
  sleep 1
  target=$(fother "$primary")
  "$BIN/replfsd" promote --config "$F/$target/replfsd.yml" >/dev/null
  sleep 0.5
  fkill_timed "$target"
  after+=("$FTIME")
  fwriter_stop
  fstart "$target"
done
echo "Crash of the new primary 0.5 s after a \`promote\` (inside the handoff's hold-back), to the first write acknowledged by another node ($AFTER_HANDOFF_RUNS runs):"
echo
ftimes_table "${after[@]}"
echo
for name in a b c; do kill "${FPID[$name]}" 2>/dev/null || true; done
for name in a b c; do while kill -0 "${FPID[$name]}" 2>/dev/null; do sleep 0.1; done; done
# The same crashes with replication.sync-replicas: 1: none of the writes
# acknowledged across all runs may be missing on the last primary.
for name in a b c; do
  sed -i "s|^  token-file: $F/token\$|  token-file: $F/token\n  sync-replicas: 1|" "$F/$name/replfsd.yml"
  fstart "$name"
done
fsettled >/dev/null
fcrash_series
missing=$(fmissing "$(fsettled)")
echo "Crash failover with \`replication.sync-replicas: 1\`, as above ($FAILOVER_RUNS runs), and acknowledged writes missing on the last primary afterwards: ${missing%% *} of ${missing##* }:"
echo
ftimes_table "${FTIMES[@]}"
echo
for name in a b c; do kill "${FPID[$name]}" 2>/dev/null || true; done
for name in a b c; do while kill -0 "${FPID[$name]}" 2>/dev/null; do sleep 0.1; done; done
kill "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null || true
fi
if want growth; then
echo "### Memory and write rate over many transactions: a primary and two replicas (loopback)"
echo
G=$ROOT/growth
rm -rf "$G"; mkdir -p "$G"
echo "bench-token-$RANDOM$RANDOM" >"$G/token"; chmod 600 "$G/token"
gport=$(( 26000 + RANDOM % 2000 ))
declare -A GPID
# The nodes go with the script, however it ends.
trap 'for pid in "${GPID[@]}"; do kill "$pid" 2>/dev/null || true; done; stop_node' EXIT
for name in a b c; do
  mkdir -p "$G/$name"
  cat >"$G/$name/replfsd.yml" <<YAML
node: node-$name
mount: $G/$name/mnt
data: $G/$name/data
admin: {socket: $G/$name/replfsd.sock}
retention: ${GROWTH_RETENTION:-1m}
replication:
  listen: 127.0.0.1:$(( gport + $(printf '%d' "'$name") - 97 ))
  token-file: $G/token
lease:
  static:
    primary: node-a
    peers: {node-a: 127.0.0.1:$gport, node-b: 127.0.0.1:$(( gport + 1 )), node-c: 127.0.0.1:$(( gport + 2 ))}
YAML
  "$BIN/replfsd" mount --config "$G/$name/replfsd.yml" --log-level warning >/dev/null 2>>"$G/$name/log" &
  GPID[$name]=$!
done
for name in a b c; do
  for _ in $(seq 300); do grep -q " $G/$name/mnt " /proc/self/mountinfo && stat -f "$G/$name/mnt" >/dev/null 2>&1 && break; sleep 0.1; done
done
rss() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
wal_ratio() {
  "$BIN/replfs-testkit" bench --native "$ROOT/native" --mounted "$G/a/mnt" --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" --scenarios wal-normal |
    tail -1 | awk -F'|' '{gsub(/ /, "", $5); print $5}'
}
total=${GROWTH_TRANSACTIONS:-1000000}
step=${GROWTH_STEP:-100000}
fresh=$(wal_ratio)
echo "RSS of each node every $step one-row transactions (WAL, synchronous=NORMAL, BEGIN IMMEDIATE) at full speed, retention ${GROWTH_RETENTION:-1m}:"
echo
echo "| transactions | rate /s | primary RSS | replica b RSS | replica c RSS |"
echo "|---:|---:|---:|---:|---:|"
echo "| 0 | | $(rss "${GPID[a]}") MiB | $(rss "${GPID[b]}") MiB | $(rss "${GPID[c]}") MiB |"
"$BIN/replfs-testkit" rows --db "$G/a/mnt/growth.db" --transactions "$total" --report-every "$step" | while read -r kind count rate _; do
  if [[ $kind == progress ]]; then echo "| $count | $rate | $(rss "${GPID[a]}") MiB | $(rss "${GPID[b]}") MiB | $(rss "${GPID[c]}") MiB |"; fi
done
after=$(wal_ratio)
sleep "${GROWTH_IDLE_SECONDS:-80}"
echo "| idle $(( ${GROWTH_IDLE_SECONDS:-80} )) s later | | $(rss "${GPID[a]}") MiB | $(rss "${GPID[b]}") MiB | $(rss "${GPID[c]}") MiB |"
echo
expired=$(wal_ratio)
burst=$(burst_rate "$G/a/mnt")
read -r _ sustained_count sustained _ < <("$BIN/replfs-testkit" rows --db "$G/a/mnt/sustained.db" --seconds 60)
echo "One-row WAL/NORMAL transactions against native SQLite on the same disk (\`replfs-testkit bench\`, median of $ROUNDS), and a 60-second run against a burst (median of three 5,000-transaction runs on new databases):"
echo
echo "| fresh mount | after $total transactions | after their retention expired | 60 s sustained /s | burst /s | sustained / burst |"
echo "|---:|---:|---:|---:|---:|---:|"
printf '| %s | %s | %s | %d | %d | %.2fx |\n' "$fresh" "$after" "$expired" "$sustained" "$burst" "$(echo "$sustained / $burst" | bc -l)"
echo
for name in a b c; do kill "${GPID[$name]}" 2>/dev/null || true; done
for name in a b c; do while kill -0 "${GPID[$name]}" 2>/dev/null; do sleep 0.1; done; done
rm -rf "$G"
fi
# Starts a static-lease cluster of nodes $2 ("a b" or "a b c") under $1,
# node-a primary, with the replication line $4 (NODE stands for the node's
# letter; may be empty) and token file $3; PIDs in VPID; waits for the mounts.
declare -A VPID
variant_cluster() {
  local dir=$1 port=$(( 23000 + RANDOM % 4000 )) peers="" i=0 name
  for name in $2; do peers+="${peers:+, }node-$name: 127.0.0.1:$(( port + i ))"; i=$(( i + 1 )); done
  i=0
  for name in $2; do
    mkdir -p "$dir/$name"
    cat >"$dir/$name/replfsd.yml" <<YAML
node: node-$name
mount: $dir/$name/mnt
data: $dir/$name/data
admin: {socket: $dir/$name/replfsd.sock}
replication:
  listen: 127.0.0.1:$(( port + i ))
  token-file: $3
${4//NODE/$name}
lease:
  static:
    primary: node-a
    peers: {$peers}
YAML
    "$BIN/replfsd" mount --config "$dir/$name/replfsd.yml" --log-level warning >/dev/null 2>>"$dir/$name/log" &
    VPID[$name]=$!
    i=$(( i + 1 ))
  done
  for name in $2; do
    for _ in $(seq 300); do grep -q " $dir/$name/mnt " /proc/self/mountinfo && stat -f "$dir/$name/mnt" >/dev/null 2>&1 && break; sleep 0.1; done
  done
}
variant_stop() { for name in "${!VPID[@]}"; do kill "${VPID[$name]}" 2>/dev/null || true; done; for name in "${!VPID[@]}"; do while kill -0 "${VPID[$name]}" 2>/dev/null; do sleep 0.1; done; done; VPID=(); }
if want tls; then
echo "### TLS: replication in clear against mutual TLS 1.3, side by side"
echo
# Two two-node clusters in turn, the same but for replication.tls.
T="$ROOT/tls"
rm -rf "$T"
mkdir -p "$T"
"$BIN/replfsd" tls init "$T/pki" >/dev/null
for name in a b; do "$BIN/replfsd" tls issue "$T/pki" "node-$name" --ip 127.0.0.1 >/dev/null; done
tls_cluster() { variant_cluster "$T/$1" "a b" "$ROOT/tls-token" "$([[ $1 == tls ]] && echo "  tls: {cert: $T/pki/node-NODE.crt, key: $T/pki/node-NODE.key, ca: $T/pki/ca.crt}")"; }
echo "bench-token-$RANDOM$RANDOM" >"$ROOT/tls-token"
chmod 600 "$ROOT/tls-token"
echo "Replication lag (COMMIT on the primary to the row visible on the replica, 10,000 transactions one at a time, WAL) and the primary's write rate with the replica following (WAL/NORMAL one-row transactions, median of $ROUNDS), in clear and with replication.tls:"
echo
echo "| replication | lag p50 | lag p99 | lag max | write rate /s | RSS primary | RSS replica |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for variant in plain tls; do
  tls_cluster "$variant"
  lag=$("$BIN/replfs-testkit" lag --primary "$T/$variant/a/mnt/lag.db" --replica "$T/$variant/b/mnt/lag.db" --transactions 10000)
  rate=$("$BIN/replfs-testkit" bench --native "$ROOT/native" --mounted "$T/$variant/a/mnt" --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" --scenarios wal-normal | tail -1 | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  rss_a=$(awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/${VPID[a]}/status")
  rss_b=$(awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/${VPID[b]}/status")
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('| %s | %.2f ms | %.2f ms | %.2f ms | %s | %s MiB | %s MiB |' % (sys.argv[2], d['p50_ms'], d['p99_ms'], d['max_ms'], sys.argv[3], sys.argv[4], sys.argv[5]))" "$lag" "$variant" "$rate" "$rss_a" "$rss_b"
  variant_stop
done
echo
rm -rf "$T"
fi
if want sync; then
echo "### Synchronous replication: async against sync-replicas: 1, side by side"
echo
# Two three-node clusters in turn, the same but for replication.sync-replicas.
S="$ROOT/sync"
rm -rf "$S"
mkdir -p "$S"
sync_cluster() { variant_cluster "$S/$1" "a b c" "$ROOT/sync-token" "$([[ $1 == sync ]] && echo "  sync-replicas: 1")"; sleep 2; }
echo "bench-token-$RANDOM$RANDOM" >"$ROOT/sync-token"
chmod 600 "$ROOT/sync-token"
echo "WAL/NORMAL one-row transactions (BEGIN IMMEDIATE) on the primary of three nodes, two replicas following, asynchronous and with sync-replicas: 1; one writer, and 8 writers on one database, each with its own connection (\`replfs-testkit commits\`, the run with the median rate of $ROUNDS runs of $SECONDS_PER_RUN s; latency is a whole transaction's):"
echo
echo "| replication | writers | tx/s | ratio to async | p50 | p99 |"
echo "|---|---:|---:|---:|---:|---:|"
declare -A SRESULT
for variant in async sync; do
  sync_cluster "$variant"
  for writers in 1 8; do
    runs=()
    for round in $(seq "$ROUNDS"); do
      runs+=("$("$BIN/replfs-testkit" commits --db "$S/$variant/a/mnt/commits-$writers-$round.db" --writers "$writers" --seconds "$SECONDS_PER_RUN")")
    done
    SRESULT[$variant-$writers]=$(printf '%s\n' "${runs[@]}" | python3 -c "import json,sys; r=sorted((json.loads(l) for l in sys.stdin if l.strip()), key=lambda d: d['tx_per_s']); print(json.dumps(r[len(r)//2]))")
  done
  variant_stop
done
for writers in 1 8; do
  for variant in async sync; do
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); a=json.loads(sys.argv[2]); print('| %s | %d | %d | %.2fx | %.2f ms | %.2f ms |' % (sys.argv[3], d['writers'], d['tx_per_s'], d['tx_per_s']/a['tx_per_s'], d['p50_ms'], d['p99_ms']))" \
      "${SRESULT[$variant-$writers]}" "${SRESULT[async-$writers]}" "$([[ $variant == sync ]] && echo 'sync-replicas: 1' || echo async)"
  done
done
echo
rm -rf "$S"
fi
if want backup; then
echo "### Backups: a lone primary with and without backup.path (same disk), side by side"
echo
# Two lone primaries at once, the same but for the backup section; the
# archive on the same disk as everything else.
K="$ROOT/backup"
rm -rf "$K"
mkdir -p "$K/archive"
echo "bench-token-$RANDOM$RANDOM" >"$ROOT/backup-token"
chmod 600 "$ROOT/backup-token"
variant_cluster "$K/plain" "a" "$ROOT/backup-token" ""
plain_pid=${VPID[a]}
variant_cluster "$K/backup" "a" "$ROOT/backup-token" "backup:
  path: $K/archive"
echo "One-row transactions, BEGIN IMMEDIATE (\`replfs-testkit bench\`, ${SECONDS_PER_RUN} s per run, median of $ROUNDS interleaved rounds; the \"without\" column is the node without backup.path, the \"with\" column the one archiving every commit):"
echo
echo "| scenario | without /s | with backup.path /s | ratio | target |"
echo "|---|---:|---:|---:|---:|"
"$BIN/replfs-testkit" bench --native "$K/plain/a/mnt" --mounted "$K/backup/a/mnt" --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" --scenarios wal-normal,wal-full,delete-full \
  | tail -n +3 | awk -F'|' '{printf "|%s|%s|%s|%s| >= 0.90x |\n", $2, $3, $4, $5}'
echo
archive_txid() { "$BIN/replfsd" status --json --config "$K/backup/a/replfsd.yml" | python3 -c 'import json,sys
d=json.load(sys.stdin); b=d.get("backup") or {}; print(" ".join("%s:%s:%s" % (x["name"], x["archived_txid"], x["txid"]) for x in b.get("databases", [])))'; }
caught_up() {
  for _ in $(seq 1800); do archive_txid | tr ' ' '\n' | awk -F: '$2 != $3 {bad=1} END {exit bad}' && return; sleep 0.1; done
  echo "the archive did not catch up in 180 s: $(archive_txid)" >&2; return 1
}
caught_up
rm -f "$K"/backup/a/mnt/bench-* 2>/dev/null || true
# The archive's size for N one-row transactions on one database.
N=${BACKUP_TRANSACTIONS:-200000}
before=$(du -sb "$K/archive" | cut -f1)
start=$(now)
"$BIN/replfs-testkit" rows --db "$K/backup/a/mnt/size.db" --transactions "$N" >/dev/null
caught_up
elapsed=$(echo "$(now) - $start" | bc -l)
level_bytes() { du -sb "$K/archive/size.db/ltx/$1" 2>/dev/null | cut -f1 || echo 0; }
total=$(du -sb "$K/archive/size.db" | cut -f1)
l0=$(level_bytes 0); l0files=$(ls "$K/archive/size.db/ltx/0" | wc -l)
echo "Archive size for $N one-row transactions (\`replfs-testkit rows\`, archived as they commit in $(printf '%.1f' "$elapsed") s; level 0: at most one file a second, each holding what committed since the one before):"
echo
echo "| archive | bytes | per million transactions |"
echo "|---|---:|---:|"
printf '| all levels | %d | %.1f MiB |\n' "$total" "$(echo "$total * 1000000 / $N / 1048576" | bc -l)"
printf '| level 0 (%d files; removed once level 1 covers them and 5 min old) | %d | %.1f MiB |\n' "$l0files" "$l0" "$(echo "$l0 * 1000000 / $N / 1048576" | bc -l)"
printf '| what stays: snapshots, levels 1-3, positions | %d | %.1f MiB |\n' "$(( total - l0 ))" "$(echo "($total - $l0) * 1000000 / $N / 1048576" | bc -l)"
echo
# Restore: a ${SNAP_MIB} MiB database and a day of transactions (one a second).
sqlite3 "$K/backup/a/mnt/big.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < $(( SNAP_MIB * 1024 * 1024 / 1100 )))
  INSERT INTO t(v) SELECT randomblob(1000) FROM n;" >/dev/null
"$BIN/replfs-testkit" rows --db "$K/backup/a/mnt/big.db" --transactions 86400 >/dev/null
caught_up
size=$(stat -c %s "$K/backup/a/mnt/big.db")
files=$(find "$K/archive/big.db/ltx" -name '*.ltx' | wc -l)
rm -f "$K/restored.db" "$K/litestream.db"
start=$(now); "$BIN/replfsd" restore --from "$K/archive" big.db "$K/restored.db" >/dev/null; ours=$(echo "$(now) - $start" | bc -l)
start=$(now); "$TOOLS/litestream/bin/litestream" restore -o "$K/litestream.db" "file://$K/archive/big.db" >/dev/null 2>&1; theirs=$(echo "$(now) - $start" | bc -l)
hash() { "$TOOLS/dbhash" "$1" | cut -d' ' -f1; }
live=$(hash "$K/backup/a/mnt/big.db")
same=$([[ $(hash "$K/restored.db") == "$live" ]] && echo yes || echo NO)
same_ls=$([[ $(hash "$K/litestream.db") == "$live" ]] && echo yes || echo NO)
echo "Restore of a $(( size / 1048576 )) MiB database with a day of transactions (86,400 one-row transactions after it was loaded; $files archive files):"
echo
echo "| restore | seconds | dbhash equal to the live database |"
echo "|---|---:|---|"
printf '| replfsd restore (checksums verified) | %.2f | %s |\n' "$ours" "$same"
printf '| litestream restore (0.5.17) | %.2f | %s |\n' "$theirs" "$same_ls"
printf '| RSS of the archiving primary | %s MiB | |\n' "$(awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/${VPID[a]}/status")"
echo
variant_stop
kill "$plain_pid" 2>/dev/null || true; while kill -0 "$plain_pid" 2>/dev/null; do sleep 0.1; done
rm -rf "$K"
fi
echo "Command: \`make bench\` (BENCH_SECONDS=$SECONDS_PER_RUN BENCH_ROUNDS=$ROUNDS BENCH_DB_MIB=$DB_MIB BENCH_SNAPSHOT_MIB=$SNAP_MIB BENCH_FAILOVER_RUNS=$FAILOVER_RUNS BENCH_HANDOFF_RUNS=$HANDOFF_RUNS BENCH_AFTER_HANDOFF_RUNS=$AFTER_HANDOFF_RUNS BACKUP_TRANSACTIONS=${BACKUP_TRANSACTIONS:-200000})"
} | tee "$REPORT"
stop_node
rm -rf "$ROOT"
