#!/usr/bin/env python3
"""Copies a live WAL database and its -wal the way backup tools do.

live_wal_copy.py OUTSIDE DEST METHOD

Creates OUTSIDE/live.db in WAL mode with automatic checkpoints off and
commits 40 transactions of 10 rows each, so that all of them are only in
the -wal. While the connection is still open (a live database: nothing is
checkpointed), copies live.db and live.db-wal into the directory DEST:

  4096       plain writes of 4096 bytes (as Tcl's `file copy` does: not
             whole WAL frames), the database first
  wal-first  the same, the -wal first
  rename     each file written whole under a temporary name and renamed
             into place, the -wal first (as rsync does)
  stage      into OUTSIDE/staged/ only, for `cp` to copy

Prints the number of rows and the sum of their values.
"""
import os
import sqlite3
import sys

outside, dest, method = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(outside, exist_ok=True)
db = os.path.join(outside, "live.db")
connection = sqlite3.connect(db, isolation_level=None)
connection.execute("PRAGMA journal_mode=wal")
connection.execute("PRAGMA wal_autocheckpoint=0")
connection.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB)")
for tx in range(40):
    connection.execute("BEGIN")
    for row in range(10):
        connection.execute("INSERT INTO t(v, pad) VALUES(?, randomblob(700))", (tx * 10 + row,))
    connection.execute("COMMIT")
count, total = connection.execute("SELECT count(*), sum(v) FROM t").fetchone()

target = os.path.join(outside, "staged") if method == "stage" else dest
os.makedirs(target, exist_ok=True)
names = ["live.db-wal", "live.db"] if method in ("wal-first", "rename") else ["live.db", "live.db-wal"]
for name in names:
    with open(os.path.join(outside, name), "rb") as source:
        data = source.read()
    final = os.path.join(target, name)
    written = os.path.join(target, "." + name + ".tmp") if method == "rename" else final
    fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    step = 4096 if method in ("4096", "wal-first") else max(len(data), 1)
    for offset in range(0, len(data), step):
        os.write(fd, data[offset:offset + step])
    os.close(fd)
    if written != final:
        os.rename(written, final)
print(f"{count} {total}")
connection.close()
