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
                if mode == "wal" { #expect(node.currentLog.contains("log resumed")) }
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
    }
}
