#!/usr/bin/env bash
# make demo: three nodes on this machine (loopback) with an etcd lease and a
# stand-in application supervised on the primary, the way Headscale runs on
# ReplFS. Shows: SQLite through the primary's mount, one LTX file per
# transaction, the same rows and positions on read-only replicas, the Noise
# key following, a planned switchover (replfsd promote), a crash failover
# (kill -9 of the primary) with the application moving, the killed node
# rejoining, and `replfsd status` all along.
set -euo pipefail
BIN=${REPLFS_BIN_DIR:?REPLFS_BIN_DIR is set by make demo}
TOOLS=${REPLFS_TOOLS:?REPLFS_TOOLS is set by make demo}
ROOT=${DEMO_DIR:-/tmp/replfs-demo}
declare -A PID
ETCD=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
now() { date +%s.%N; }
stop() {
  local name=$1
  if [[ -n ${PID[$name]:-} ]] && kill -0 "${PID[$name]}" 2>/dev/null; then
    kill "${PID[$name]}"
    while kill -0 "${PID[$name]}" 2>/dev/null; do sleep 0.1; done
  fi
  PID[$name]=""
  if grep -q " $ROOT/$name/mnt " /proc/self/mountinfo; then umount -l "$ROOT/$name/mnt"; fi
}
cleanup() {
  for name in a b c; do stop "$name"; done
  if [[ -n $ETCD ]]; then kill "$ETCD" 2>/dev/null || true; wait "$ETCD" 2>/dev/null || true; fi
}
trap cleanup EXIT
start() {
  local name=$1
  "$BIN/replfsd" mount --config "$ROOT/$name/replfsd.yml" >>"$ROOT/$name/app.out" 2>>"$ROOT/$name/replfsd.log" &
  PID[$name]=$!
  for _ in $(seq 300); do
    if grep -q " $ROOT/$name/mnt " /proc/self/mountinfo && stat -f "$ROOT/$name/mnt" >/dev/null 2>&1; then return; fi
    sleep 0.05
  done
  cat "$ROOT/$name/replfsd.log"; exit 1
}
status() { "$BIN/replfsd" status --config "$ROOT/$1/replfsd.yml"; }
role() { "$BIN/replfsd" status --json --config "$ROOT/$1/replfsd.yml" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["role"])' 2>/dev/null || echo down; }
primary() {  # the node that says it is primary (waits up to 30 s)
  for _ in $(seq 600); do
    for name in a b c; do
      if [[ -n ${PID[$name]:-} && $(role "$name") == primary ]]; then echo "$name"; return; fi
    done
    sleep 0.05
  done
  echo none
}
position() { "$BIN/replfsd" status --json --config "$ROOT/$1/replfsd.yml" | python3 -c 'import json,sys
d=[x for x in json.load(sys.stdin)["databases"] if x["name"]=="db.sqlite"]
print("txid %d checksum %s" % (d[0]["txid"], d[0]["checksum"]) if d else "none")'; }
converge() {  # wait until every running node has the primary's position
  local p; p=$(primary)
  for _ in $(seq 200); do
    local same=1
    for name in a b c; do
      [[ -n ${PID[$name]:-} && $(position "$name") != "$(position "$p")" ]] && same=0
    done
    [[ $same == 1 ]] && return
    sleep 0.1
  done
}

cleanup
rm -rf "$ROOT"
mkdir -p "$ROOT"
head -c 32 /dev/urandom | base64 >"$ROOT/token"
chmod 600 "$ROOT/token"
port=$(( 22000 + RANDOM % 2000 ))
etcd_port=$(( port + 10 ))

# The stand-in application: what Headscale does to its database, while it runs.
cat >"$ROOT/app.sh" <<'APP'
#!/bin/sh
# Runs only on the primary (replfsd starts and stops it). Records a heartbeat
# in the database through the mount every 200 ms.
echo "$(date +%T.%3N) app: serving on $REPLFS_NODE"
trap 'echo "$(date +%T.%3N) app: stopping on $REPLFS_NODE"; exit 0' TERM
while true; do
  sqlite3 -cmd ".timeout 2000" "$REPLFS_MOUNT/db.sqlite" "INSERT INTO heartbeats(node, at) VALUES('$REPLFS_NODE', strftime('%H:%M:%f','now'));" >/dev/null 2>&1
  sleep 0.2
done
APP
chmod +x "$ROOT/app.sh"

say "A throwaway etcd on loopback (the lease: TTL 2 s)"
etcd --name demo --data-dir "$ROOT/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$(( etcd_port + 1 ))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$(( etcd_port + 1 ))" --initial-cluster "demo=http://127.0.0.1:$(( etcd_port + 1 ))" \
  >"$ROOT/etcd.log" 2>&1 &
ETCD=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.1; done
echo "etcd at http://127.0.0.1:$etcd_port"

mkdir -p "$ROOT/backup"
for name in a b c; do
  mkdir -p "$ROOT/$name"
  cat >"$ROOT/$name/replfsd.yml" <<YAML
node: node-$name
mount: $ROOT/$name/mnt
data: $ROOT/$name/data
admin:
  socket: $ROOT/$name/replfsd.sock
replication:
  listen: 127.0.0.1:$(( port + $(printf '%d' "'$name") - 97 ))
  token-file: $ROOT/token
lease:
  type: etcd
  etcd:
    endpoints: [http://127.0.0.1:$etcd_port]
    key: /replfs/demo/primary
    ttl: 2s
exec:
  command: [$ROOT/app.sh]
  stop-timeout: 5s
backup:
  path: $ROOT/backup
YAML
done

say "Three nodes with the same config shape (node-a's below); whoever takes the lease is primary"
cat "$ROOT/a/replfsd.yml"
start a
sleep 0.5
start b; start c
p=$(primary)
run mount -t fuse.replfs
echo "primary: node-$p"

say "The application's database, created through the primary's mount (WAL, as Headscale)"
run sqlite3 "$ROOT/$p/mnt/db.sqlite" "PRAGMA journal_mode=wal; CREATE TABLE IF NOT EXISTS heartbeats(id INTEGER PRIMARY KEY, node TEXT, at TEXT);"
head -c 32 /dev/urandom >"$ROOT/$p/mnt/noise_private.key"
sleep 1.5
converge
run status "$p"
echo
for name in a b c; do
  printf 'node-%s: %s | %s heartbeats, last from %s | key %s\n' "$name" "$(position "$name")" \
    "$(sqlite3 "$ROOT/$name/mnt/db.sqlite" "SELECT count(*) FROM heartbeats")" \
    "$(sqlite3 "$ROOT/$name/mnt/db.sqlite" "SELECT node FROM heartbeats ORDER BY id DESC LIMIT 1")" \
    "$(sha1sum <"$ROOT/$name/mnt/noise_private.key" | cut -c1-12)"
done
echo "LTX log on node-$p: $(ls "$ROOT/$p/data/ltx/db.sqlite" | grep -c -e '\.segment$' -e '\.ltx$') files (segments of many transactions each)"

say "Replicas are read-only"
replica=$(for name in a b c; do [[ $name != "$p" ]] && echo "$name" && break; done)
run sqlite3 "$ROOT/$replica/mnt/db.sqlite" "INSERT INTO heartbeats(node) VALUES('intruder');" || true

say "Planned switchover: replfsd promote on node-$replica (the application moves, nothing is lost)"
run "$BIN/replfsd" promote --config "$ROOT/$replica/replfsd.yml"
p=$(primary)
sleep 1
run status "$p"
app_log() { cat "$ROOT"/*/app.out | sort | tail -"$1"; }
app_log 3

say "Crash: kill -9 the primary (node-$p) and time until the new primary accepts a write"
killed=$p
before_crash=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
start_ns=$(now)
run kill -9 "${PID[$killed]}"
wait "${PID[$killed]}" 2>/dev/null || true
PID[$killed]=""
while true; do
  for name in a b c; do
    [[ -z ${PID[$name]:-} ]] && continue
    if sqlite3 "$ROOT/$name/mnt/db.sqlite" "PRAGMA busy_timeout=100; INSERT INTO heartbeats(node, at) VALUES('demo-writer', 'after failover');" >/dev/null 2>&1; then
      new=$name; break 2
    fi
  done
  sleep 0.02
done
printf 'node-%s accepted a write %.2f s after the kill (LiteFS with Consul: 11-21 s)\n' "$new" "$(echo "$(now) - $start_ns" | bc -l)"
sleep 1
run status "$new"
app_log 2

say "The killed node comes back as a replica; its unreplicated tail, if any, is kept aside"
start "$killed"
sleep 2
converge
run status "$killed"
run "$TOOLS/dbhash" "$ROOT/a/mnt/db.sqlite" "$ROOT/b/mnt/db.sqlite" "$ROOT/c/mnt/db.sqlite"

say "Backups: whichever node is primary archives every transaction to $ROOT/backup (Litestream's layout)"
sleep 1.5
run "$BIN/replfsd" backups --from "$ROOT/backup"
run "$BIN/replfsd" restore --from "$ROOT/backup" --timestamp "$before_crash" db.sqlite "$ROOT/before-crash.db"
echo "heartbeats as of $before_crash: $(sqlite3 "$ROOT/before-crash.db" "SELECT count(*) FROM heartbeats"), now: $(sqlite3 "$ROOT/$(primary)/mnt/db.sqlite" "SELECT count(*) FROM heartbeats")"
if [[ -x $TOOLS/litestream/bin/litestream ]]; then
  run "$TOOLS/litestream/bin/litestream" restore -o "$ROOT/litestream.db" "file://$ROOT/backup/db.sqlite"
  echo "litestream's restore of the newest state: $(sqlite3 "$ROOT/litestream.db" "SELECT count(*) FROM heartbeats") heartbeats"
fi

say "SIGTERM: the application stops first, then the mounts go away"
# Replicas first: a primary that stops cleanly frees the lease at once, and
# a replica still running would take it over for a moment.
last=$(primary)
for name in a b c; do [ "$name" = "$last" ] || stop "$name"; done
stop "$last"
app_log 1
echo
echo "Everything is in $ROOT (configs, logs, data). Heartbeats by node:"
sqlite3 "$ROOT/a/data/files/db.sqlite" "SELECT node, count(*) FROM heartbeats GROUP BY node"
