import Foundation
import Testing

@testable import ReplFS

/// ``WALIndexAppender`` writes what SQLite itself reads: checked with
/// SQLite (Python's sqlite3, a separate process) as the reader, the
/// recovery and the checkpointer.
@Suite("WAL index appender")
struct WALIndexAppenderTests {
    /// Runs a Python program with sqlite3; its output, trimmed.
    static func python(_ program: String, _ arguments: [String] = []) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", program] + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0 else { throw Failure("python failed: \(text)") }
        return text
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static let count = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('SELECT count(*) FROM t').fetchone()[0], c.execute('PRAGMA integrity_check').fetchone()[0])"

    /// A reader holding a transaction open on `path` (so its `-shm` lives),
    /// answering "count" with what its snapshot shows.
    final class HeldReader {
        let process = Process()
        let input = Pipe()
        let output = Pipe()

        init(_ path: String) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [
                "-c",
                """
                import sqlite3, sys
                c = sqlite3.connect(sys.argv[1], isolation_level=None)
                c.execute('BEGIN')
                print(c.execute('SELECT count(*) FROM t').fetchone()[0], flush=True)
                for line in sys.stdin:
                    print(c.execute('SELECT count(*) FROM t').fetchone()[0], flush=True)
                c.execute('COMMIT')
                c.close()
                """,
                path,
            ]
            process.standardInput = input
            process.standardOutput = output
            try process.run()
        }

        func line() -> String {
            var bytes: [UInt8] = []
            while true {
                let byte = output.fileHandleForReading.readData(ofLength: 1)
                if byte.isEmpty || byte.first == 10 { break }
                bytes += byte
            }
            return String(decoding: bytes, as: UTF8.self)
        }

        func ask() -> String {
            input.fileHandleForWriting.write(Data("count\n".utf8))
            return line()
        }

        func finish() {
            input.fileHandleForWriting.closeFile()
            process.waitUntilExit()
        }
    }

    @Test("frames appended under a reader: new readers see them, the reader keeps its snapshot, SQLite recovers and checkpoints them, across hash blocks")
    func appendUnderReader() throws {
        let directory = NSTemporaryDirectory() + "wal-append-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let a = directory + "/a.db"
        let b = directory + "/b.db"
        // a: 50 rows; b: a copy of a with 100 more (both checkpointed, WAL gone).
        _ = try Self.python(
            """
            import sqlite3, sys, shutil
            c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=wal')
            c.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)')
            c.executemany('INSERT INTO t(v) VALUES (randomblob(300))', [()] * 50); c.commit(); c.close()
            shutil.copy(sys.argv[1], sys.argv[2])
            c = sqlite3.connect(sys.argv[2])
            c.executemany('INSERT INTO t(v) VALUES (randomblob(300))', [()] * 100); c.commit(); c.close()
            """, [a, b])
        let reader = try HeldReader(a)
        defer { reader.finish() }
        #expect(reader.line() == "50")

        let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: b)))
        let pageSize = 4096
        let pageCount = image.count / pageSize
        let pages = (0..<pageCount).map { (PageNumber(UInt32($0 + 1)), Array(image[($0 * pageSize)..<(($0 + 1) * pageSize)])) }
        let wal = try Syscall.open(at: AT_FDCWD, a + "-wal", flags: O_RDWR).get()
        defer { Syscall.close(wal) }
        let shm = try Syscall.open(at: AT_FDCWD, a + "-shm", flags: O_RDWR).get()
        defer { Syscall.close(shm) }
        let appender = WALIndexAppender(wal: wal, sharedMemory: shm)

        // Enough appends to fill the first hash block and go on in the next.
        var frames = 0
        while frames <= WALIndexAppender.entriesInFirstBlock + 100 {
            let appended = try appender.append(pages: pages, commitSize: UInt32(pageCount), pageSize: pageSize, expectedFrames: frames).get()
            #expect(Int(appended.maxFrame) == frames + pageCount)
            frames = Int(appended.maxFrame)
        }
        // The index and the caller disagree: nothing is written.
        #expect(throws: WALIndexAppender.Failure.unusableIndex) {
            try appender.append(pages: pages, commitSize: UInt32(pageCount), pageSize: pageSize, expectedFrames: frames - 1).get()
        }

        #expect(try Self.python(Self.count, [a]) == "150 ok", "a new reader sees the appended transaction")
        #expect(reader.ask() == "50", "the reader in its transaction keeps its snapshot")

        // SQLite's own recovery (no -shm) accepts every frame: checksums and salts hold.
        let copy = directory + "/copy.db"
        try FileManager.default.copyItem(atPath: a, toPath: copy)
        try FileManager.default.copyItem(atPath: a + "-wal", toPath: copy + "-wal")
        #expect(try Self.python(Self.count, [copy]) == "150 ok")

        // The reader ends and closes: SQLite checkpoints the frames into the file.
        reader.finish()
        #expect(!FileManager.default.fileExists(atPath: a + "-wal"), "the last connection checkpointed and removed the WAL")
        #expect(try Self.python(Self.count, [a]) == "150 ok")
    }
}
