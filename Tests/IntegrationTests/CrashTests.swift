import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Invariant 3: `kill -9` of replfsd at a random moment under write load,
    /// then `replfsd mount` again.
    @Suite("Crash recovery")
    struct CrashTests {
        @Test("20 kill -9 cycles under write load: integrity ok, log = content, every acknowledged commit kept", arguments: ["wal", "delete"])
        func killNine(mode: String) throws {
            try withNode { node in
                let db = "crash-\(mode).db"
                let acks = node.root + "/acks-\(mode)"
                var acknowledged = 0
                var redone = 0
                var repaired = 0
                var random = SystemRandomNumberGenerator()
                for cycle in 1...20 {
                    let writer = try Command.start(TestEnvironment.testkit, [
                        "workload", "--db", node.mount + "/" + db, "--journal-mode", mode, "--synchronous", "full",
                        "--transactions", "1000000", "--ack-file", acks, "--seed", "\(cycle)", "--max-payload", "20000",
                    ])
                    // Kill after a random number of further acknowledged commits.
                    let target = acknowledged + Int.random(in: 1...60, using: &random)
                    try waitUntil(timeout: 60, "cycle \(cycle): \(target) acknowledged commits") {
                        guard writer.process.isRunning else { throw Failure("writer stopped: \(writer.finish())") }
                        return Self.lines(acks) >= target
                    }
                    try node.kill9()
                    let result = writer.finish()
                    if ProcessInfo.processInfo.environment["REPLFS_KEEP_TEST_DATA"] != nil {
                        try? FileManager.default.removeItem(atPath: node.root + "/before-restart-\(cycle)")
                        try? FileManager.default.copyItem(atPath: node.data, toPath: node.root + "/before-restart-\(cycle)")
                    }
                    #expect(result.status != 0, "the writer sees the mount die")
                    acknowledged = Self.lines(acks)

                    try node.start()
                    // Recovery may redo a logged transaction the crash kept from
                    // the file, never paper over a mismatch between log and content.
                    #expect(!node.currentLog.contains("does not match its log"), "cycle \(cycle): \(node.currentLog)")
                    repaired += node.currentLog.components(separatedBy: "left reused free pages").count - 1
                    redone += node.currentLog.components(separatedBy: "applied a logged transaction").count - 1
                    let check = try Command.run(TestEnvironment.testkit, ["check", "--db", node.mount + "/" + db, "--ack-file", acks])
                    #expect(check.status == 0, "cycle \(cycle): \(check)\nlog: \(node.currentLog)")
                    let rebuilt = try node.rebuild(db)
                    #expect(try Command.dbhash(rebuilt) == Command.dbhash(node.mount + "/" + db), "cycle \(cycle): the log's position is the content")
                }
                #expect(acknowledged >= 20)
                print("crash test \(mode): \(acknowledged) acknowledged commits, \(redone) recoveries redid a logged transaction, \(repaired) recorded free pages a rollback left")
            }
        }

        @Test("a database changed or deleted behind replfsd's back is recorded as a new transaction at the next start")
        func changedBehindTheDaemon() throws {
            try withNode { node in
                for name in ["edited.db", "removed.db"] {
                    _ = try Command.sqlite(node.mount + "/" + name, "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                }
                try node.stop()
                let before = (node.ltxFiles("edited.db").count, node.ltxFiles("removed.db").count)
                _ = try Command.sqlite(node.data + "/files/edited.db", "INSERT INTO t VALUES(2);")
                try FileManager.default.removeItem(atPath: node.data + "/files/removed.db")
                try node.start()
                #expect(node.currentLog.contains("does not match its log"), "the mismatch is logged: \(node.currentLog)")
                // Recorded at start; the files are written just after, in the background.
                try waitUntil(timeout: 60, "both changes are logged") {
                    node.ltxFiles("edited.db").count >= before.0 + 1 && node.ltxFiles("removed.db").count >= before.1 + 1
                }
                #expect(node.ltxFiles("edited.db").count == before.0 + 1)
                #expect(node.ltxFiles("removed.db").count == before.1 + 1)
                try CaptureTests.expectLogMatches(node, "edited.db")
                #expect(try Command.sqlite(node.mount + "/edited.db", "SELECT group_concat(x) FROM t") == "1,2")
                let rebuilt = try node.rebuild("removed.db")
                #expect(try FileManager.default.attributesOfItem(atPath: rebuilt)[.size] as? Int == 0, "the log ends with the deletion")
            }
        }

        @Test("a crash between logging a transaction and its commit point is redone, even when SQLite's rollback left reused free pages")
        func redoOverRolledBackFreePages() throws {
            try withNode { node in
                let name = "freelist.db"
                _ = try Command.sqlite(node.mount + "/" + name, """
                    PRAGMA journal_mode=delete; CREATE TABLE t(x); CREATE TABLE big(x);
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO big SELECT randomblob(900) FROM n;
                    DROP TABLE big;
                    """)
                try node.stop()
                let file = node.data + "/files/" + name
                let before = try Data(contentsOf: URL(fileURLWithPath: file))
                try node.start()
                // The next transaction reuses the free pages.
                _ = try Command.sqlite(node.mount + "/" + name, """
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO t SELECT randomblob(900) FROM n;
                    """)
                let expected = try Command.dbhash(node.mount + "/" + name)
                try node.stop()
                let after = try Data(contentsOf: URL(fileURLWithPath: file))

                // What a crash after the log append but before the journal's
                // deletion leaves once SQLite rolls the hot journal back: the
                // journaled pages restored, the file cut to its old size, and
                // the reused free pages (never journaled) with the new bytes.
                let pageSize = 4096
                let pageCount = UInt32(before.count / pageSize)
                func page(_ data: Data, _ pgno: UInt32) -> [UInt8]? {
                    let start = Int(pgno - 1) * pageSize
                    return start + pageSize <= data.count ? [UInt8](data[start..<start + pageSize]) : nil
                }
                let free = try #require(Freelist.pages(pageSize: pageSize, pageCount: pageCount) { page(before, $0) })
                // Trunk pages hold the list itself: SQLite journals them.
                func uint32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
                    bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
                }
                var trunks = Set<UInt32>()
                var trunk = uint32(try #require(page(before, 1)), at: 32)
                while trunk != 0, trunks.insert(trunk).inserted, let bytes = page(before, trunk) {
                    trunk = uint32(bytes, at: 0)
                }
                var rolledBack = before
                var reused = 0
                for pgno in free.subtracting(trunks).sorted() {
                    guard let new = page(after, pgno), new != page(before, pgno) else { continue }
                    rolledBack.replaceSubrange(Int(pgno - 1) * pageSize..<Int(pgno) * pageSize, with: new)
                    reused += 1
                }
                #expect(reused > 0, "the second transaction reused free pages")
                try rolledBack.write(to: URL(fileURLWithPath: file))
                try Data(repeating: 0, count: 512).write(to: URL(fileURLWithPath: file + "-journal"))

                try node.start()
                #expect(node.currentLog.contains("applied a logged transaction"), "\(node.currentLog)")
                #expect(!node.currentLog.contains("does not match its log"), "\(node.currentLog)")
                #expect(try Command.sqlite(node.mount + "/" + name, "PRAGMA integrity_check") == "ok")
                #expect(try Command.sqlite(node.mount + "/" + name, "SELECT count(*) FROM t") == "100")
                #expect(try Command.dbhash(node.mount + "/" + name) == expected)
                let rebuilt = try node.rebuild(name)
                #expect(try Command.dbhash(rebuilt) == expected, "the log's position is the content")
            }
        }

        static func lines(_ path: String) -> Int {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
        }
    }
}
