import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// A data directory that fills up: a commit is acknowledged only if its
    /// record is stored, and no record is dropped; the log resumes by itself
    /// when space returns.
    @Suite("Disk full")
    struct DiskFullTests {
        static let writer = TestEnvironment.packageRoot + "/Tests/tools/disk_full_writer.py"

        /// What happens once the disk is full: space returns while running,
        /// or the node is stopped while its log is stalled.
        enum Recovery: String, CaseIterable, Sendable {
            case freeWhileRunning
            case restartWhileFull
        }

        @Test(
            "a full data directory stalls the log, loses no acknowledged commit, and resumes when space returns",
            arguments: [("wal", Recovery.freeWhileRunning), ("delete", .freeWhileRunning), ("wal", .restartWhileFull)])
        func fillAndFree(mode: String, recovery: Recovery) throws {
            let cluster = try Cluster(size: 2)
            let node = cluster.primary
            defer {
                cluster.destroy()
                umount2(node.data, Int32(MNT_DETACH))
                try? FileManager.default.removeItem(atPath: cluster.root)
            }
            // The primary's data directory on a file system of its own, 128 MiB.
            try FileManager.default.createDirectory(atPath: node.data, withIntermediateDirectories: true)
            let mounted = try Command.run("/bin/mount", ["-t", "tmpfs", "-o", "size=128m", "tmpfs", node.data])
            try #require(mounted.status == 0, "\(mounted)")
            try cluster.start()
            try cluster.waitForPrimary()

            let work = node.root + "/writer"
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            let client = try Command.start("/usr/bin/env", ["python3", Self.writer, node.mount + "/full.db", mode, work])
            try waitUntil(timeout: 60, "the writer is ready") { FileManager.default.fileExists(atPath: work + "/ready") }
            func acknowledged() -> [Int] {
                ((try? String(contentsOfFile: work + "/acks", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int($0) }
            }
            try waitUntil(timeout: 30, "commits before the disk fills") { acknowledged().count >= 100 }

            // Fill every remaining block.
            let filler = node.data + "/filler"
            let fd = open(filler, O_WRONLY | O_CREAT, 0o644)
            try #require(fd >= 0)
            let chunk = [UInt8](repeating: 0xEE, count: 1 << 20)
            while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
            var small = [UInt8](repeating: 0xEE, count: 512)
            while small.withUnsafeMutableBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
            close(fd)

            if mode == "wal" {
                // Commits into WAL space SQLite owns go on into the spool; the
                // files behind them cannot be written: the log says it stalled.
                var seen: String?
                try waitUntil(timeout: 30, "status shows the stall") {
                    seen = try node.status().logStall
                    return seen != nil
                }
                #expect(seen?.contains("no space on DATA") == true, "\(String(describing: seen))")
                try waitUntil(timeout: 10, "the log says it stalled") { node.currentLog.contains("log stalled: no space on DATA") }
                let text = try node.admin(["status"])
                #expect(text.output.contains("log stalled"), "\(text.output)")
            }
            // The fault lasts until SQLite's own commits fail (its WAL space,
            // or the spool, used up), which the log explains once, not per write.
            func refusals() -> [Substring] {
                node.currentLog.split(separator: "\n").filter { $0.contains("a write in the mount failed") || $0.contains("commits refused") }
            }
            try waitUntil(timeout: 90, interval: 0.1, "commits fail and the log says why") { !refusals().isEmpty }
            #expect(refusals().count <= 2, "\(refusals().count) lines: \(refusals().prefix(3))")

            var finished: CommandResult?
            switch recovery {
            case .freeWhileRunning:
                // Space returns: the log resumes by itself, commits go on.
                try FileManager.default.removeItem(atPath: filler)
                let freedAt = acknowledged().count
                try waitUntil(timeout: 30, "commits after space returns") { acknowledged().count >= freedAt + 100 }
                do {
                    try waitUntil(timeout: 30, "the stall ends") { try node.status().logStall == nil }
                } catch {
                    let lines = node.currentLog.split(separator: "\n").filter { $0.contains("stall") || $0.contains("LTX") || $0.contains("error") }
                    throw Failure("\(error): \(String(describing: try? node.status().logStall)); \(lines.suffix(8).joined(separator: "\n"))")
                }
                // (The stall is cleared just before the line is logged.)
                if mode == "wal" { try waitUntil(timeout: 10, "the log says it resumed") { node.currentLog.contains("log resumed") } }
                try "".write(toFile: work + "/stop", atomically: true, encoding: .utf8)
            case .restartWhileFull:
                // Stopped while stalled: the spools keep what no file holds.
                // (The writer dies without closing, as a crashed application
                // would: a clean close would checkpoint and free its WAL.)
                kill(client.pid, SIGKILL)
                client.process.waitUntilExit()
                finished = client.finish()
                let stopped = try node.stop()
                #expect(stopped.error.contains("spools kept"), "\(stopped.error.suffix(2000))")
                // Still full: the start refuses, naming the reason, and keeps them.
                do {
                    try node.start()
                    Issue.record("started on a full data directory with records it cannot write")
                } catch {
                    #expect("\(error)".contains("stay in the spool") || "\(error)".contains("No space"), "\(error)")
                }
                try FileManager.default.removeItem(atPath: filler)
                try node.start()
                try cluster.waitForPrimary()
            }
            let summary = finished ?? client.finish()
            #expect(summary.status == 0 || recovery == .restartWhileFull, "\(summary)")
            print("disk full (\(mode), \(recovery)): \(summary.output)")

            // Every acknowledged transaction is in the database and the log
            // is a whole chain, before and after a restart.
            let acks = Set(acknowledged())
            func check(_ when: String) throws {
                let stored = Set(try Command.sqlite(node.mount + "/full.db", "SELECT seq FROM acks").split(separator: "\n").compactMap { Int($0) })
                let missing = acks.subtracting(stored)
                #expect(missing.isEmpty, "\(when): \(missing.count) acknowledged commits missing, e.g. \(missing.sorted().prefix(5))")
                #expect(try Command.sqlite(node.mount + "/full.db", "PRAGMA integrity_check") == "ok")
                try node.waitForLog("full.db")
                let verify = try Command.run(TestEnvironment.replfsd, ["verify", node.ltxDirectory("full.db")])
                #expect(verify.status == 0, "\(when): \(verify)")
                let rebuilt = try node.rebuild("full.db")
                #expect(try Command.dbhash(rebuilt) == Command.dbhash(node.mount + "/full.db"), "\(when): the chain rebuilds the database")
            }
            try check("running")
            try cluster.waitForConvergence(["full.db"])
            try node.stop()
            try node.start()
            try cluster.waitForPrimary()
            try check("after a restart")
            try cluster.waitForConvergence(["full.db"])
        }

        @Test("a replica whose disk fills claims no position it does not hold, refuses to lead, and converges by itself when space returns")
        func replicaFills() throws {
            let cluster = try Cluster(size: 2)
            let (primary, replica) = (cluster.nodes[0], cluster.nodes[1])
            defer {
                cluster.destroy()
                umount2(replica.data, Int32(MNT_DETACH))
                try? FileManager.default.removeItem(atPath: cluster.root)
            }
            // The replica's data directory on a file system of its own: room
            // for its spool and about half of what the primary writes.
            try FileManager.default.createDirectory(atPath: replica.data, withIntermediateDirectories: true)
            let mounted = try Command.run("/bin/mount", ["-t", "tmpfs", "-o", "size=96m", "tmpfs", replica.data])
            try #require(mounted.status == 0, "\(mounted)")
            let port = Cluster.freePorts(1)[0]
            let config = try String(contentsOfFile: replica.configPath, encoding: .utf8)
            try replica.writeConfig(config + "\nmetrics:\n  listen: 127.0.0.1:\(port)\n")
            try cluster.start()
            try cluster.waitForPrimary()
            func stalledMetric() -> String? {
                let body = (try? Command.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? ""
                return body.split(separator: "\n").first { $0.hasPrefix("replfs_apply_stalled ") }.map { String($0.split(separator: " ").last!) }
            }

            // 1,000 transactions of 64 KiB of incompressible rows: the replica
            // must log and write each, about 128 MB.
            let db = primary.mount + "/big.db"
            _ = try Command.sqlite(db, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB NOT NULL);")
            _ = try Command.sqlite(db, String(repeating: "INSERT INTO t(b) VALUES (randomblob(65536));\n", count: 1000))
            let primaryTXID = try #require(try primary.status().databases.first { $0.name == "big.db" }?.txid)

            var stall: String?
            try waitUntil(timeout: 60, interval: 0.2, "the replica reports that it cannot apply") {
                stall = try replica.status().applyStall
                return stall != nil
            }
            #expect(stall?.contains("big.db") == true && stall?.contains("No space") == true, "\(String(describing: stall))")
            print("replica disk full: \(stall ?? "")")
            try waitUntil(timeout: 10, interval: 0.2, "replfs_apply_stalled is 1") { stalledMetric().flatMap(Double.init) == 1 }
            try waitUntil(timeout: 10, "the log says why") {
                replica.currentLog.contains("cannot write replicated pages") || replica.currentLog.contains("cannot record replicated")
            }

            // What it claims is behind the primary and is what its file holds:
            // the primary shows it lagging, its readers get the content of
            // that position or are told the database is busy, never a
            // malformed one.
            for _ in 0..<5 {
                let status = try replica.status()
                let held = try #require(status.databases.first { $0.name == "big.db" })
                #expect(held.txid < primaryTXID, "the replica claims \(held.txid) of \(primaryTXID)")
                let check = try Command.run("/usr/bin/sqlite3", ["-readonly", replica.mount + "/big.db", "PRAGMA quick_check; SELECT count(*) FROM t;"])
                if check.status == 0 {
                    #expect(check.output.hasPrefix("ok\n"), "\(check)")
                } else {
                    // Held off (busy), or the full disk itself (its -shm cannot grow).
                    #expect(!check.error.contains("malformed") && !check.error.contains("corrupt"), "\(check)")
                    #expect(check.error.contains("locked") || check.error.contains("busy") || check.error.contains("disk I/O error"), "\(check)")
                }
                let seen = try primary.status().replicas.first { $0.node == replica.name }?.databases.first { $0.name == "big.db" }
                #expect((seen?.lagTransactions ?? 0) > 0, "the primary sees \(String(describing: seen))")
                Thread.sleep(forTimeInterval: 0.2)
            }
            let lines = replica.currentLog.split(separator: "\n").filter { $0.contains("cannot write replicated pages") || $0.contains("cannot record replicated") }
            #expect(lines.count <= 2, "logged \(lines.count) times: \(lines.prefix(3))")
            // It does not lead: promote is refused up front, naming the reason.
            let promote = try replica.admin(["promote"])
            #expect(promote.status != 0, "\(promote)")
            #expect((promote.output + promote.error).contains("cannot become primary"), "\(promote)")
            #expect(try primary.status().role == "primary")

            // Space returns: the replica catches up by itself, without a restart.
            let grown = try Command.run("/bin/mount", ["-o", "remount,size=512m", replica.data])
            try #require(grown.status == 0, "\(grown)")
            try cluster.waitForConvergence(["big.db"], timeout: 90)
            try waitUntil(timeout: 10, interval: 0.2, "the stall ends") { try replica.status().applyStall == nil && stalledMetric().flatMap(Double.init) == 0 }
            #expect(try Command.sqlite(replica.mount + "/big.db", "PRAGMA integrity_check") == "ok")
            #expect(try Command.sqlite(replica.mount + "/big.db", "SELECT count(*) FROM t") == "1000")
            #expect(replica.logs.isEmpty, "the replica did not restart")
        }
    }
}
