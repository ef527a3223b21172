#!/usr/bin/env bash
# make demo: mount a directory with replfsd, run SQLite through it (as
# Headscale does: WAL, one writer), and show what ReplFS records: one LTX file
# per transaction, positions, recovery after kill -9, a rebuild from the log.
set -euo pipefail
BIN=${REPLFS_BIN_DIR:?REPLFS_BIN_DIR is set by make demo}
TOOLS=${REPLFS_TOOLS:?REPLFS_TOOLS is set by make demo}
ROOT=${DEMO_DIR:-/tmp/replfs-demo}
PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
stop() {
  if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.1; done
  fi
  PID=""
  if grep -q " $ROOT/mnt " /proc/self/mountinfo; then umount -l "$ROOT/mnt"; fi
}
trap stop EXIT
start() {
  "$BIN/replfsd" mount --config "$ROOT/replfsd.yml" 2>>"$ROOT/replfsd.log" &
  PID=$!
  for _ in $(seq 300); do
    if grep -q " $ROOT/mnt " /proc/self/mountinfo && stat -f "$ROOT/mnt" >/dev/null 2>&1; then return; fi
    sleep 0.05
  done
  cat "$ROOT/replfsd.log"; exit 1
}
position() { "$BIN/replfsd" verify "$ROOT/data/ltx/$1" | sed 's/^ok: [^:]*: /  /'; }

stop
rm -rf "$ROOT"
mkdir -p "$ROOT"
cat >"$ROOT/replfsd.yml" <<YAML
node: demo-a
mount: $ROOT/mnt
data: $ROOT/data
YAML

say "Mount $ROOT/mnt (real files in $ROOT/data/files)"
cat "$ROOT/replfsd.yml"
start
run mount -t fuse.replfs

say "SQLite through the mount, the way Headscale uses it (WAL, one writer)"
run sqlite3 "$ROOT/mnt/db.sqlite" "PRAGMA journal_mode=wal; CREATE TABLE nodes(id INTEGER PRIMARY KEY, hostname TEXT, last_seen TEXT);"
for host in laptop phone server; do
  run sqlite3 "$ROOT/mnt/db.sqlite" "INSERT INTO nodes(hostname, last_seen) VALUES('$host', datetime('now'));"
done
run sqlite3 "$ROOT/mnt/db.sqlite" "SELECT * FROM nodes;"
printf 'secret-noise-key\n' >"$ROOT/mnt/noise_private.key"
run ls -la "$ROOT/mnt"

say "One LTX file per committed transaction (TXID 1 is a snapshot)"
sleep 0.2   # files are written just after each commit
run ls -l "$ROOT/data/ltx/db.sqlite"
echo "position of db.sqlite:"; position db.sqlite

say "A rolled-back transaction records nothing"
run sqlite3 "$ROOT/mnt/db.sqlite" "BEGIN; DELETE FROM nodes; ROLLBACK;"
echo "position of db.sqlite:"; position db.sqlite

say "kill -9 replfsd during a write load, then mount again: recovery"
"$BIN/replfs-testkit" workload --db "$ROOT/mnt/db.sqlite" --journal-mode wal --synchronous full \
  --transactions 1000000 --ack-file "$ROOT/acks" >/dev/null 2>&1 &
writer=$!
acked() { if [[ -f $ROOT/acks ]]; then wc -l <"$ROOT/acks"; else echo 0; fi; }
while [[ $(acked) -lt 200 ]]; do sleep 0.05; done
run kill -9 "$PID"
wait "$PID" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
echo "the writer saw $(wc -l <"$ROOT/acks") acknowledged commits before the mount died"
PID=""
start
grep -E "clearing a dead mount|applied a logged|replayed" "$ROOT/replfsd.log" | tail -3 || true
run "$BIN/replfs-testkit" check --db "$ROOT/mnt/db.sqlite" --ack-file "$ROOT/acks"
echo "position of db.sqlite:"; position db.sqlite

say "Rebuild the database from its LTX chain alone; SQLite's dbhash agrees"
run "$BIN/replfsd" verify --rebuild "$ROOT/rebuilt.db" "$ROOT/data/ltx/db.sqlite"
run "$TOOLS/dbhash" "$ROOT/rebuilt.db" "$ROOT/mnt/db.sqlite"

say "SIGTERM unmounts cleanly"
kill "$PID"; wait "$PID"; echo "replfsd exited with $?"; PID=""
run ls "$ROOT/data/files"
echo
echo "Everything is in $ROOT. Replication, failover and Headscale supervision come with issues 3 and 4."
