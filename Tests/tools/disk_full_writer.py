#!/usr/bin/env python3
"""A SQLite client for the disk-full tests (real SQLite, its own process).

disk_full_writer.py DB MODE WORKDIR

Prepares DB in MODE (wal or delete). In WAL mode, like the reported case, it
turns automatic checkpoints off, grows the WAL and restarts it, so that
later commits write into WAL space SQLite already owns. Then it writes
WORKDIR/ready and commits one row per transaction, appending the row's
sequence number to WORKDIR/acks after each COMMIT returns: every line there
is a transaction SQLite acknowledged. Failed commits are counted and retried
with the next number. It stops once WORKDIR/stop exists and prints a JSON
summary.
"""
import json
import os
import sqlite3
import sys
import time

db, mode, work = sys.argv[1], sys.argv[2], sys.argv[3]
connection = sqlite3.connect(db, isolation_level=None, timeout=5)
connection.execute(f"PRAGMA journal_mode={mode}")
connection.execute("CREATE TABLE IF NOT EXISTS acks(seq INTEGER PRIMARY KEY, pad BLOB)")
if mode == "wal":
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("BEGIN")
    for _ in range(1500):
        connection.execute("INSERT INTO acks(seq, pad) VALUES(NULL, randomblob(3000))")
    connection.execute("COMMIT")
    connection.execute("DELETE FROM acks")
    connection.execute("PRAGMA wal_checkpoint(RESTART)")
open(os.path.join(work, "ready"), "w").close()

acks = open(os.path.join(work, "acks"), "a")
seq, commits, failures, errors = 0, 0, 0, {}
started = time.time()
while not os.path.exists(os.path.join(work, "stop")) and time.time() - started < 120:
    seq += 1
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO acks(seq, pad) VALUES(?, randomblob(200))", (seq,))
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        failures += 1
        errors[str(error)] = errors.get(str(error), 0) + 1
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        time.sleep(0.005)
        continue
    commits += 1
    acks.write(f"{seq}\n")
    acks.flush()
print(json.dumps({"commits": commits, "failures": failures, "errors": errors}))
