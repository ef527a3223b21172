#!/usr/bin/env bash
# make demo: a primary and two replicas on this machine (loopback), SQLite
# written through the primary the way Headscale writes (WAL, one writer), and
# what ReplFS does with it: one LTX file per transaction, the same rows and
# positions on the replicas, read-only replicas, the Noise key following,
# recovery after kill -9, a rebuild from the log.
set -euo pipefail
BIN=${REPLFS_BIN_DIR:?REPLFS_BIN_DIR is set by make demo}
TOOLS=${REPLFS_TOOLS:?REPLFS_TOOLS is set by make demo}
ROOT=${DEMO_DIR:-/tmp/replfs-demo}
declare -A PID

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
stop() {
  local name=$1
  if [[ -n ${PID[$name]:-} ]] && kill -0 "${PID[$name]}" 2>/dev/null; then
    kill "${PID[$name]}"
    while kill -0 "${PID[$name]}" 2>/dev/null; do sleep 0.1; done
  fi
  PID[$name]=""
  if grep -q " $ROOT/$name/mnt " /proc/self/mountinfo; then umount -l "$ROOT/$name/mnt"; fi
}
cleanup() { for name in a b c; do stop "$name"; done; }
trap cleanup EXIT
start() {
  local name=$1
  "$BIN/replfsd" mount --config "$ROOT/$name/replfsd.yml" >/dev/null 2>>"$ROOT/$name/replfsd.log" &
  PID[$name]=$!
  for _ in $(seq 300); do
    if grep -q " $ROOT/$name/mnt " /proc/self/mountinfo && stat -f "$ROOT/$name/mnt" >/dev/null 2>&1; then return; fi
    sleep 0.05
  done
  cat "$ROOT/$name/replfsd.log"; exit 1
}
position() { "$BIN/replfsd" verify "$ROOT/$1/data/ltx/$2" | sed 's/^ok: [^:]*: .*position /position /; s/, [0-9]*-byte.*//'; }
wait_for_position() {  # node database: wait until it matches node a's
  for _ in $(seq 200); do
    [[ "$(position "$1" "$2" 2>/dev/null)" == "$(position a "$2")" ]] && return
    sleep 0.05
  done
}

cleanup
rm -rf "$ROOT"
mkdir -p "$ROOT"
head -c 32 /dev/urandom | base64 >"$ROOT/token"
port=$(( 22000 + RANDOM % 2000 ))
for name in a b c; do
  mkdir -p "$ROOT/$name"
  cat >"$ROOT/$name/replfsd.yml" <<YAML
node: node-$name
mount: $ROOT/$name/mnt
data: $ROOT/$name/data
replication:
  listen: 127.0.0.1:$(( port + $(printf '%d' "'$name") - 97 ))
  token-file: $ROOT/token
lease:
  static:
    primary: node-a
    peers: {node-a: 127.0.0.1:$port, node-b: 127.0.0.1:$(( port + 1 )), node-c: 127.0.0.1:$(( port + 2 ))}
YAML
done

say "Three nodes: node-a primary, node-b and node-c replicas (static lease, shared token)"
cat "$ROOT/b/replfsd.yml"
for name in a b c; do start "$name"; done
run mount -t fuse.replfs

say "SQLite through the primary's mount, the way Headscale uses it (WAL, one writer)"
run sqlite3 "$ROOT/a/mnt/db.sqlite" "PRAGMA journal_mode=wal; CREATE TABLE nodes(id INTEGER PRIMARY KEY, hostname TEXT, last_seen TEXT);"
for host in laptop phone server; do
  run sqlite3 "$ROOT/a/mnt/db.sqlite" "INSERT INTO nodes(hostname, last_seen) VALUES('$host', datetime('now'));"
done
head -c 32 /dev/urandom >"$ROOT/a/mnt/noise_private.key"
sleep 0.3
run ls -l "$ROOT/a/data/ltx/db.sqlite"

say "The replicas hold the same rows, the same position, the same Noise key"
for name in b c; do wait_for_position "$name" db.sqlite; done
for name in a b c; do
  printf 'node-%s: %s | %s | key %s\n' "$name" "$(sqlite3 "$ROOT/$name/mnt/db.sqlite" "SELECT group_concat(hostname, ',') FROM nodes")" \
    "$(position "$name" db.sqlite)" "$(sha1sum <"$ROOT/$name/mnt/noise_private.key" | cut -c1-12)"
done

say "Replicas are read-only"
run sqlite3 "$ROOT/b/mnt/db.sqlite" "INSERT INTO nodes(hostname) VALUES('intruder');" || true
run touch "$ROOT/c/mnt/newfile" || true

say "kill -9 a replica, keep writing, start it again: it catches up"
run kill -9 "${PID[b]}"
wait "${PID[b]}" 2>/dev/null || true
PID[b]=""
"$BIN/replfs-testkit" workload --db "$ROOT/a/mnt/db.sqlite" --journal-mode wal --transactions 500 >/dev/null
echo "node-a wrote 500 more transactions: $(position a db.sqlite)"
start b
wait_for_position b db.sqlite
echo "node-b after restart:              $(position b db.sqlite)"
run "$TOOLS/dbhash" "$ROOT/a/mnt/db.sqlite" "$ROOT/b/mnt/db.sqlite" "$ROOT/c/mnt/db.sqlite"

say "kill -9 the primary's replfsd during a write load, then mount again: recovery"
"$BIN/replfs-testkit" workload --db "$ROOT/a/mnt/db.sqlite" --journal-mode wal --synchronous full \
  --transactions 1000000 --ack-file "$ROOT/acks" >/dev/null 2>&1 &
writer=$!
acked() { if [[ -f $ROOT/acks ]]; then wc -l <"$ROOT/acks"; else echo 0; fi; }
while [[ $(acked) -lt 200 ]]; do sleep 0.05; done
run kill -9 "${PID[a]}"
wait "${PID[a]}" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
PID[a]=""
echo "the writer saw $(acked) acknowledged commits before the mount died"
start a
grep -E "clearing a dead mount|applied a logged|replayed|free pages" "$ROOT/a/replfsd.log" | tail -3 || true
run "$BIN/replfs-testkit" check --db "$ROOT/a/mnt/db.sqlite" --ack-file "$ROOT/acks"
for name in b c; do wait_for_position "$name" db.sqlite; done
for name in a b c; do printf 'node-%s: %s\n' "$name" "$(position "$name" db.sqlite)"; done

say "Rebuild the database from the primary's LTX files alone; SQLite's dbhash agrees"
run "$BIN/replfsd" verify --rebuild "$ROOT/rebuilt.db" "$ROOT/a/data/ltx/db.sqlite"
run "$TOOLS/dbhash" "$ROOT/rebuilt.db" "$ROOT/a/mnt/db.sqlite"

say "SIGTERM unmounts cleanly"
for name in c b a; do stop "$name"; done
run ls "$ROOT/a/data/files"
echo
echo "Everything is in $ROOT. Failover, promote/demote and Headscale supervision come with issue 4."
