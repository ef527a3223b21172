import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// `replfsd verify`: bad LTX files are reported with the file and reason.
    @Suite("verify command")
    struct VerifyCommandTests {
        @Test("good logs pass; corrupt, truncated or missing files fail with the file and the reason")
        func badInput() throws {
            try withNode { node in
                _ = try Command.sqlite(node.mount + "/v.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1); INSERT INTO t VALUES(2); INSERT INTO t VALUES(3);")
                try node.stop()
                let directory = node.ltxDirectory("v.db")
                let files = node.ltxFiles("v.db")
                #expect(files.count == 4)
                let good = try Command.run(TestEnvironment.replfsd, ["verify", directory])
                #expect(good.status == 0, "\(good)")
                #expect(good.output.hasPrefix("ok: "))

                let work = node.root + "/bad"
                // The log's records as single files (segments hold most).
                func copyLog() throws {
                    try? FileManager.default.removeItem(atPath: work)
                    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
                    for file in files { try FileManager.default.copyItem(atPath: file, toPath: work + "/" + URL(fileURLWithPath: file).lastPathComponent) }
                }

                // A flipped byte inside a segment fails it too.
                let segments = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".segment") }
                #expect(!segments.isEmpty, "small transactions are kept in segments")
                if let segment = segments.first {
                    let copy = node.root + "/seg"
                    try? FileManager.default.removeItem(atPath: copy)
                    try FileManager.default.copyItem(atPath: directory, toPath: copy)
                    var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: copy + "/" + segment)))
                    bytes[bytes.count - 30] ^= 0xFF
                    try Data(bytes).write(to: URL(fileURLWithPath: copy + "/" + segment))
                    let broken = try Command.run(TestEnvironment.replfsd, ["verify", copy])
                    #expect(broken.status == 1, "\(broken)")
                }

                // A flipped byte in the page data: file checksum mismatch.
                try copyLog()
                let victim = work + "/" + URL(fileURLWithPath: files[2]).lastPathComponent
                var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: victim)))
                bytes[bytes.count - 30] ^= 0xFF
                try Data(bytes).write(to: URL(fileURLWithPath: victim))
                var result = try Command.run(TestEnvironment.replfsd, ["verify", work])
                #expect(result.status == 1)
                #expect(result.error.contains(victim), "\(result)")

                // Truncated.
                try copyLog()
                let truncated = work + "/" + URL(fileURLWithPath: files[1]).lastPathComponent
                #expect(truncate(truncated, 150) == 0)
                result = try Command.run(TestEnvironment.replfsd, ["verify", work])
                #expect(result.status == 1)
                #expect(result.error.contains(truncated) && result.error.contains("truncated"), "\(result)")

                // A gap in the chain.
                try copyLog()
                try FileManager.default.removeItem(atPath: work + "/" + URL(fileURLWithPath: files[2]).lastPathComponent)
                result = try Command.run(TestEnvironment.replfsd, ["verify", work])
                #expect(result.status == 1)
                #expect(result.error.contains("gap"), "\(result)")

                // Not an LTX file at all.
                try "garbage".write(toFile: work + "/x.ltx", atomically: true, encoding: .utf8)
                result = try Command.run(TestEnvironment.replfsd, ["verify", work + "/x.ltx"])
                #expect(result.status == 1)
                #expect(result.error.contains("x.ltx"), "\(result)")

                // Rebuild from an intact chain gives the database back.
                let out = node.root + "/out.db"
                result = try Command.run(TestEnvironment.replfsd, ["verify", "--rebuild", out, directory])
                #expect(result.status == 0, "\(result)")
                #expect(try Command.sqlite(out, "SELECT group_concat(x) FROM t") == "1,2,3")

                // An existing OUT is not overwritten without --force.
                try Data("precious".utf8).write(to: URL(fileURLWithPath: out))
                result = try Command.run(TestEnvironment.replfsd, ["verify", "--rebuild", out, directory])
                #expect(result.status == 1, "\(result)")
                #expect(result.error.contains("\(out) exists") && result.error.contains("--force"), "\(result)")
                #expect(try String(contentsOfFile: out, encoding: .utf8) == "precious")
                result = try Command.run(TestEnvironment.replfsd, ["verify", "--rebuild", out, "--force", directory])
                #expect(result.status == 0, "\(result)")
                #expect(try Command.sqlite(out, "SELECT group_concat(x) FROM t") == "1,2,3")

                // A chain that breaks part-way leaves nothing at OUT, not a
                // valid-looking older database (nor a temporary file).
                try copyLog()
                let last = work + "/" + URL(fileURLWithPath: files[3]).lastPathComponent
                bytes = try Array(Data(contentsOf: URL(fileURLWithPath: last)))
                bytes[bytes.count - 30] ^= 0xFF
                try Data(bytes).write(to: URL(fileURLWithPath: last))
                let partial = node.root + "/partial.db"
                result = try Command.run(TestEnvironment.replfsd, ["verify", "--rebuild", partial, work])
                #expect(result.status == 1, "\(result)")
                #expect(!FileManager.default.fileExists(atPath: partial), "no partial database at OUT")
                let leftovers = try FileManager.default.contentsOfDirectory(atPath: node.root).filter { $0.hasPrefix("partial.db") }
                #expect(leftovers.isEmpty, "\(leftovers)")
            }
        }

        @Test("verify passes on a live log while transactions commit: a file under an LTX name is always complete")
        func liveLog() throws {
            try withNode { node in
                try node.workload("live.db", ["--journal-mode", "wal", "--transactions", "0"])
                let writer = try Command.start(TestEnvironment.testkit, [
                    "workload", "--db", node.mount + "/live.db", "--journal-mode", "wal", "--transactions", "3000", "--max-payload", "3000",
                ])
                // The newest file listed is the one most likely still being
                // written. (A listing of a live directory is not a snapshot:
                // the whole chain is checked after the writer stops.)
                var runs = 0
                while writer.process.isRunning {
                    guard let newest = node.ltxFiles("live.db").last else { continue }
                    let result = try Command.run(TestEnvironment.replfsd, ["verify", newest])
                    #expect(result.status == 0, "run \(runs): \(result)")
                    guard result.status == 0 else { break }
                    runs += 1
                }
                #expect(writer.finish().status == 0)
                #expect(runs > 0)
                try node.waitForLog("live.db")
                let whole = try Command.run(TestEnvironment.replfsd, ["verify", node.ltxDirectory("live.db")])
                #expect(whole.status == 0, "\(whole)")
            }
        }
    }
}
