import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Transaction capture: every committed SQLite transaction through the
    /// mount becomes exactly one LTX file, and the chain rebuilds the database.
    @Suite("Capture")
    struct CaptureTests {
        /// Waits until the database's log holds `count` files (they are written
        /// just after each commit), then checks the chain rebuilds exactly the
        /// content SQLite sees through the mount.
        static func expectLogMatches(_ node: Node, _ db: String, files count: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
            if let count {
                try waitUntil(timeout: 30, "\(db) has \(count) LTX files") { node.ltxFiles(db).count >= count }
                #expect(node.ltxFiles(db).count == count, "one LTX file per committed transaction", sourceLocation: sourceLocation)
            } else {
                try node.waitForLog(db)
            }
            let rebuilt = try node.rebuild(db)
            #expect(try Command.dbhash(rebuilt) == Command.dbhash(node.mount + "/" + db), "rebuilt from the chain = mounted", sourceLocation: sourceLocation)
            #expect(try Command.sqlite(node.mount + "/" + db, "PRAGMA integrity_check") == "ok", sourceLocation: sourceLocation)
        }

        static let modes: [(journal: String, synchronous: String)] = [
            ("delete", "full"), ("truncate", "normal"), ("persist", "full"), ("wal", "normal"), ("wal", "full"),
        ]

        @Test("randomized workloads: one LTX file per commit, none per rollback; the chain rebuilds the database", arguments: modes)
        func randomizedWorkload(mode: (journal: String, synchronous: String)) throws {
            try withNode { node in
                let db = "app-\(mode.journal).db"
                let common = ["--journal-mode", mode.journal, "--synchronous", mode.synchronous, "--auto-vacuum"]
                // Each run's own setup (pragmas, CREATE ... IF NOT EXISTS) may
                // write: measure it with an empty run after the first.
                try node.workload(db, common + ["--transactions", "0"])
                try Self.expectLogMatches(node, db)
                let created = node.ltxFiles(db).count
                #expect(created >= 1)
                try node.workload(db, common + ["--transactions", "0"])
                try Self.expectLogMatches(node, db)
                let perRun = node.ltxFiles(db).count - created
                let setup = node.ltxFiles(db).count + perRun
                let summary = try node.workload(
                    db, common + ["--transactions", "200", "--seed", "\(mode.journal.count)", "--rollback-every", "6", "--vacuum-every", "70"])
                let committed = try #require(summary["committed"])
                let vacuums = try #require(summary["vacuums"])
                #expect(committed == 167 && summary["rolledBack"] == 33)
                try Self.expectLogMatches(node, db, files: setup + committed + vacuums)
                #expect(try Command.sqlite(node.mount + "/" + db, "SELECT count(*) FROM ledger") == "\(committed)")

                // Files verify with the independent Python decoder too.
                let reference = try Command.run("/usr/bin/env", ["python3", TestEnvironment.referenceChecker, "verify"] + node.ltxFiles(db))
                #expect(reference.status == 0, "\(reference)")
                // The first file is a snapshot.
                let verify = try Command.run(TestEnvironment.replfsd, ["verify", node.ltxDirectory(db)])
                #expect(verify.status == 0, "\(verify)")
                #expect(node.ltxFiles(db).first?.hasSuffix("0000000000000001-0000000000000001.ltx") == true)
            }
        }

        @Test("rolled-back transactions, with and without cache spill, produce no LTX file")
        func rollbacks() throws {
            try withNode { node in
                for mode in ["delete", "wal"] {
                    let db = node.mount + "/rollback-\(mode).db"
                    _ = try Command.sqlite(db, "PRAGMA journal_mode=\(mode); CREATE TABLE t(x BLOB);")
                    let relative = "rollback-\(mode).db"
                    try Self.expectLogMatches(node, relative)
                    let before = node.ltxFiles(relative).count
                    // A small rollback, and one large enough to spill pages to
                    // the database file (rollback mode) or the WAL before it rolls back.
                    _ = try Command.sqlite(db, "BEGIN; INSERT INTO t VALUES(randomblob(100)); ROLLBACK;")
                    _ = try Command.sqlite(
                        db, "PRAGMA cache_size=10; BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000) INSERT INTO t SELECT randomblob(1000) FROM n; ROLLBACK;")
                    _ = try Command.sqlite(db, "INSERT INTO t VALUES(randomblob(10))")
                    try Self.expectLogMatches(node, relative, files: before + 1)
                    #expect(try Command.sqlite(db, "SELECT count(*) FROM t") == "1")
                }
            }
        }

        @Test("several databases at once, in subdirectories, in different modes")
        func severalDatabases() throws {
            try withNode { node in
                try FileManager.default.createDirectory(atPath: node.mount + "/sub/deeper", withIntermediateDirectories: true)
                let databases = [("a.db", "wal"), ("sub/b.db", "delete"), ("sub/deeper/c.db", "truncate")]
                let writers = try databases.enumerated().map { index, entry in
                    try Command.start(TestEnvironment.testkit, [
                        "workload", "--db", node.mount + "/" + entry.0, "--journal-mode", entry.1, "--transactions", "120", "--seed", "\(index)",
                    ])
                }
                for writer in writers {
                    let result = writer.finish()
                    #expect(result.status == 0, "\(result)")
                }
                for (db, _) in databases { try Self.expectLogMatches(node, db) }
                #expect(FileManager.default.fileExists(atPath: node.data + "/ltx/sub%2Fdeeper%2Fc.db"))
            }
        }

        @Test("journal-mode switches, growth, shrink, VACUUM and a page-size change are captured")
        func switchesAndVacuum() throws {
            try withNode { node in
                let db = node.mount + "/switch.db"
                let grow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000) INSERT INTO t SELECT i, randomblob(500) FROM n"
                let steps = [
                    "PRAGMA journal_mode=delete; CREATE TABLE t(k, v);",
                    grow,
                    "PRAGMA journal_mode=wal;",
                    "INSERT INTO t VALUES(-1, 'in wal');",
                    "PRAGMA journal_mode=truncate;",
                    "DELETE FROM t WHERE k % 2 = 0;",
                    "VACUUM;",
                    "PRAGMA journal_mode=persist;",
                    "PRAGMA page_size=8192; VACUUM;",
                    "PRAGMA journal_mode=wal;",
                    grow,
                    "DELETE FROM t; PRAGMA wal_checkpoint(TRUNCATE);",
                    "PRAGMA journal_mode=delete; VACUUM;",
                ]
                for (index, step) in steps.enumerated() {
                    _ = try Command.sqlite(db, step)
                    try Self.expectLogMatches(node, "switch.db")
                    #expect(try Command.sqlite(db, "PRAGMA page_size") == (index >= 8 ? "8192" : "4096"))
                }
                let pages = try Command.sqlite(db, "PRAGMA page_count")
                #expect(Int(pages)! < 10, "the database shrank back")
            }
        }

        @Test("deleting a database is logged (commit 0) and a new one at the same path continues the log")
        func dropAndRecreate() throws {
            try withNode { node in
                let db = node.mount + "/gone.db"
                _ = try Command.sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try Self.expectLogMatches(node, "gone.db")
                let before = node.ltxFiles("gone.db").count
                for suffix in ["", "-wal", "-shm"] { unlink(db + suffix) }
                try waitUntil(timeout: 30, "the deletion is logged") { node.ltxFiles("gone.db").count == before + 1 }
                let deletion = try Command.run(
                    "/usr/bin/env", ["python3", "-c", "import sys;d=open(sys.argv[1],'rb').read();print(int.from_bytes(d[12:16],'big'))", node.ltxFiles("gone.db").last!])
                #expect(deletion.output == "0\n", "commit = 0 marks the deletion")
                let rebuilt = try node.rebuild("gone.db")
                #expect(try FileManager.default.attributesOfItem(atPath: rebuilt)[.size] as? Int == 0)

                _ = try Command.sqlite(db, "PRAGMA page_size=1024; CREATE TABLE u(y); INSERT INTO u VALUES(2);")
                try Self.expectLogMatches(node, "gone.db")
                #expect(node.ltxFiles("gone.db").count > before + 1)
            }
        }

        @Test("writers in several processes and concurrent readers, with busy_timeout")
        func multiProcess() throws {
            try withNode { node in
                for mode in ["wal", "delete"] {
                    let db = "shared-\(mode).db"
                    try node.workload(db, ["--journal-mode", mode, "--transactions", "0"])
                    let writers = try (1...3).map { writer in
                        try Command.start(TestEnvironment.testkit, [
                            "workload", "--db", node.mount + "/" + db, "--journal-mode", mode, "--transactions", "80",
                            "--writer", "\(writer)", "--seed", "\(writer)", "--max-payload", "9000",
                        ])
                    }
                    var reads = 0
                    while writers.contains(where: { $0.process.isRunning }) {
                        let count = try Command.run("/usr/bin/sqlite3", ["-cmd", ".timeout 10000", node.mount + "/" + db, "SELECT count(*) FROM ledger"])
                        #expect(count.status == 0, "\(count)")
                        reads += 1
                    }
                    for writer in writers {
                        let result = writer.finish()
                        #expect(result.status == 0, "\(result)")
                    }
                    #expect(reads > 0)
                    #expect(try Command.sqlite(node.mount + "/" + db, "SELECT count(*) FROM ledger") == "240")
                    try Self.expectLogMatches(node, db)
                }
            }
        }

        @Test("SQLite's own mptest scripts pass with 0 errors inside the mount", arguments: ["config01.test", "config02.test", "multiwrite01.test"])
        func mptest(script: String) throws {
            try withNode { node in
                // A busy timeout well above mptest's 10 s: on a loaded machine
                // the integrity checks after crash02's hot journal can wait
                // longer than that for the lock, which is not an error of
                // the mount. Errors go to their own file, shown on failure.
                let errors = node.root + "/mptest-errors.log"
                let result = try Command.run(
                    TestEnvironment.mptest,
                    [node.mount + "/mptest.db", "--timeout", "60000", "--errlog", errors, TestEnvironment.mptestScripts + "/" + script],
                    timeout: 600)
                let errorLog = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
                let daemonProblems = node.currentLog.split(separator: "\n").filter { $0.contains("error") || $0.contains("warning") }.suffix(20)
                let summary = result.output.split(separator: "\n").filter { $0.contains("errors out of") }
                let diagnosis = "exit \(result.status); \(summary); mptest errors:\n\(errorLog.suffix(4000))\nreplfsd:\n\(daemonProblems.joined(separator: "\n"))"
                #expect(result.status == 0, "\(diagnosis)")
                #expect(result.output.contains(" 0 errors out of") || result.error.contains(" 0 errors out of"), "\(diagnosis)")
                try Self.expectLogMatches(node, "mptest.db")
            }
        }

        @Test("a database copied in as a file is captured when the copy closes; other files are not databases")
        func copiedDatabase() throws {
            try withNode { node in
                let outside = node.root + "/outside.db"
                _ = try Command.sqlite(outside, "CREATE TABLE t(x); INSERT INTO t VALUES('copied');")
                try FileManager.default.copyItem(atPath: outside, toPath: node.mount + "/copied.db")
                try "not sqlite".write(toFile: node.mount + "/notes.db", atomically: false, encoding: .utf8)
                try Self.expectLogMatches(node, "copied.db", files: 1)
                #expect(!FileManager.default.fileExists(atPath: node.ltxDirectory("notes.db")))
            }
        }
    }
}
