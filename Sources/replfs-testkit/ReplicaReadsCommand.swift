import ArgumentParser
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `replica-reads`: point selects on a replica of a database larger than
/// SQLite's own cache, with the primary idle and while it commits, against
/// the same selects on a native copy (idle, and while it commits).
///
/// Every select past SQLite's cache reads pages from the kernel's page
/// cache; this shows how much of that cache a replica keeps across the
/// batches it applies.
struct ReplicaReadsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica-reads", abstract: "Measure point selects on a replica while the primary writes, against a native copy.")

    @Option(help: "The database through the primary's mount.") var primary: String
    @Option(help: "The same database through a replica's mount.") var replica: String
    @Option(help: "The database's native copy, outside any mount.") var native: String
    @Option var rows = 200_000
    @Option(help: "Transactions per second the primary commits during the last measurement.") var writeRate = 100.0
    @Option(help: "Seconds per measurement.") var seconds = 3.0
    @Option(help: "Rounds (median is reported).") var rounds = 3

    func run() throws {
        do {
            for path in [primary, native] { try create(path) }
            try waitForReplica()
            // Idle, then with the writer: on the native copy, the native
            // database commits; on the replica, the primary does.
            var rates: [[Double]] = [[], [], [], []]
            for _ in 0..<rounds {
                rates[0].append(try selects(native))
                rates[1].append(try selects(replica))
                var writer = startWriter(native)
                rates[2].append(try selects(native))
                writer.finish()
                writer = startWriter(primary)
                rates[3].append(try selects(replica))
                writer.finish()
            }
            let m = rates.map { median(of: $0) }
            print("| point selects (\(rows) rows, WAL) | native /s | replica /s | ratio |")
            print("|---|---:|---:|---:|")
            print("| no writes | \(Int(m[0])) | \(Int(m[1])) | \(formatHundredths(m[1] / m[0]))x |")
            print("| \(Int(writeRate)) write tx/s (native: on the copy; replica: on the primary) | \(Int(m[2])) | \(Int(m[3])) | \(formatHundredths(m[3] / m[2]))x |")
        } catch {
            fail("\(error)")
        }
    }

    /// A table like Headscale's `nodes`, a few times larger than SQLite's cache.
    private func create(_ path: String) throws {
        let connection = try SQLiteConnection(path: path)
        _ = try connection.strings("PRAGMA journal_mode=wal")
        try connection.execute("CREATE TABLE IF NOT EXISTS nodes(id INTEGER PRIMARY KEY, hostname TEXT, last_seen INTEGER, pad BLOB)")
        guard try connection.integer("SELECT count(*) FROM nodes") == 0 else { return }
        try connection.execute("BEGIN")
        for i in 1...rows {
            try connection.run(
                "INSERT INTO nodes VALUES(?, ?, ?, randomblob(150))", [.integer(Int64(i)), .text("host-\(i).example.internal"), .integer(Int64(i))])
        }
        try connection.execute("COMMIT")
        try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    private func waitForReplica() throws {
        let deadline = now() + 120
        while now() < deadline {
            if let connection = try? SQLiteConnection(path: replica), (try? connection.integer("SELECT count(*) FROM nodes")) == Int64(rows) { return }
            usleep(100_000)
        }
        fail("the database never reached the replica")
    }

    /// Point selects on random rows after one scan that warms the page cache.
    private func selects(_ path: String) throws -> Double {
        let connection = try SQLiteConnection(path: path, busyTimeout: 10_000)
        _ = try connection.integer("SELECT sum(length(pad)) FROM nodes")
        return try pointSelects(connection, rows: rows, seconds: seconds, seed: 11)
    }

    /// A writer thread and the flag that stops it.
    private final class Writer: @unchecked Sendable {
        let path: String
        let rows: Int
        let interval: Double
        let stop = Atomic<Bool>(false)
        var thread = pthread_t()
        init(path: String, rows: Int, interval: Double) {
            self.path = path
            self.rows = rows
            self.interval = interval
        }

        func finish() {
            stop.store(true, ordering: .relaxed)
            pthread_join(thread, nil)
        }
    }

    /// Commits `writeRate` one-row updates per second on `path` (as Headscale
    /// updates `last_seen`) until it is finished.
    private func startWriter(_ path: String) -> Writer {
        let writer = Writer(path: path, rows: rows, interval: 1 / writeRate)
        let rc = pthread_create(&writer.thread, nil, { raw in
            let writer = Unmanaged<Writer>.fromOpaque(raw!).takeRetainedValue()
            do {
                let connection = try SQLiteConnection(path: writer.path)
                var random = SeededRandom(seed: 5)
                var next = now()
                while !writer.stop.load(ordering: .relaxed) {
                    try connection.execute("BEGIN IMMEDIATE")
                    try connection.run(
                        "UPDATE nodes SET last_seen = last_seen + 1 WHERE id = ?", [.integer(Int64.random(in: 1...Int64(writer.rows), using: &random))])
                    try connection.execute("COMMIT")
                    next += writer.interval
                    let wait = next - now()
                    if wait > 0 { usleep(useconds_t(wait * 1_000_000)) }
                }
            } catch {
                fail("writer: \(error)")
            }
            return nil
        }, Unmanaged.passRetained(writer).toOpaque())
        guard rc == 0 else { fail("pthread_create: \(rc)") }
        return writer
    }
}
