import ArgumentParser
import CSQLite

#if canImport(Glibc)
import Glibc
#endif

/// `replfs-testkit`: real SQLite workloads, run in their own processes by the
/// tests, the benchmark and the demo.
@main
struct Testkit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replfs-testkit",
        abstract: "SQLite workloads and checks for ReplFS tests, benchmarks and demos.",
        subcommands: [WorkloadCommand.self, CheckCommand.self, BenchCommand.self, BankCommand.self, LagCommand.self, ReplicaReadsCommand.self, WriterCommand.self, RowsCommand.self, CommitsCommand.self]
    )
}

/// A small deterministic generator (SplitMix64), so a seed replays a workload.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Appends lines to a file with one write(2) each, unbuffered, so a line is
/// on record the moment it is written even if this process is killed next.
struct LineLog {
    let fd: Int32

    init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
    }

    func append(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func fail(_ message: String) -> Never {
    var bytes = Array(("replfs-testkit: " + message + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(3)
}

/// `workload`: randomized write transactions with a ledger of what committed.
struct WorkloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload",
        abstract: "Run randomized write transactions; each inserts one ledger row (writer, seq).",
        discussion: """
            Every committed transaction inserts (writer, seq) into `ledger` and makes
            random inserts, updates and deletes in `items` (payloads from a few bytes to
            overflow pages). After COMMIT returns, seq is appended to --ack-file, so a
            crash test knows exactly which transactions SQLite reported committed.
            Prints a JSON summary at the end.
            """)

    @Option var db: String
    @Option(help: "delete, truncate, persist, wal, memory, off") var journalMode = "wal"
    @Option(help: "off, normal, full") var synchronous = "normal"
    @Option var transactions = 100
    @Option var seed: UInt64 = 1
    @Option var writer: Int64 = 1
    @Option(help: "Append each acknowledged seq to this file.") var ackFile: String?
    @Option(help: "Roll back every Nth transaction instead of committing (0: never).") var rollbackEvery = 0
    @Option(help: "VACUUM after every Nth transaction (0: never).") var vacuumEvery = 0
    @Option(help: "Largest payload in bytes.") var maxPayload = 60_000
    @Option var busyTimeout: Int32 = 10_000
    @Flag(help: "Use auto_vacuum=FULL so deletes shrink the file at commit.") var autoVacuum = false
    @Option(help: "Page size for a new database.") var pageSize: Int?

    func run() throws {
        var random = SeededRandom(seed: seed &* 1_000_003 &+ UInt64(bitPattern: writer))
        let connection: SQLiteConnection
        do {
            connection = try SQLiteConnection(path: db, busyTimeout: busyTimeout)
            if let pageSize { try connection.execute("PRAGMA page_size=\(pageSize)") }
            if autoVacuum { try connection.execute("PRAGMA auto_vacuum=FULL") }
            let mode = try connection.strings("PRAGMA journal_mode=\(journalMode)").first ?? "?"
            guard mode == journalMode.lowercased() else { fail("journal_mode is \(mode), wanted \(journalMode)") }
            try connection.execute("PRAGMA synchronous=\(synchronous)")
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, writer INTEGER, payload BLOB);
                CREATE INDEX IF NOT EXISTS items_writer ON items(writer);
                CREATE TABLE IF NOT EXISTS ledger(writer INTEGER, seq INTEGER, PRIMARY KEY(writer, seq)) WITHOUT ROWID;
                """)
        } catch {
            fail("\(db): setup: \(error)")
        }
        let acks = try ackFile.map { try LineLog(path: $0) }
        var seq: Int64
        do {
            seq = (try connection.integer("SELECT coalesce(max(seq), 0) FROM ledger WHERE writer = ?", [.integer(writer)])) + 1
        } catch {
            fail("\(db): \(error)")
        }
        var committed = 0
        var rolledBack = 0
        var vacuums = 0
        for index in 1...max(transactions, 1) where transactions > 0 {
            let rollback = rollbackEvery > 0 && index % rollbackEvery == 0
            do {
                try connection.execute("BEGIN IMMEDIATE")
                try connection.run("INSERT INTO ledger(writer, seq) VALUES(?, ?)", [.integer(writer), .integer(seq)])
                for _ in 0..<Int.random(in: 1...5, using: &random) {
                    switch Int.random(in: 0..<100, using: &random) {
                    case 0..<50:
                        try connection.run("INSERT INTO items(writer, payload) VALUES(?, ?)", [.integer(writer), .blob(payload(&random))])
                    case 50..<75:
                        try connection.run(
                            "UPDATE items SET payload = ? WHERE id = (SELECT id FROM items WHERE writer = ? ORDER BY random() LIMIT 1)",
                            [.blob(payload(&random)), .integer(writer)])
                    default:
                        try connection.run(
                            "DELETE FROM items WHERE id IN (SELECT id FROM items WHERE writer = ? ORDER BY random() LIMIT ?)",
                            [.integer(writer), .integer(Int64.random(in: 1...8, using: &random))])
                    }
                }
                if rollback {
                    try connection.execute("ROLLBACK")
                    rolledBack += 1
                } else {
                    try connection.execute("COMMIT")
                    acks?.append(String(seq))
                    committed += 1
                    seq += 1
                }
                if vacuumEvery > 0 && index % vacuumEvery == 0 {
                    try connection.execute("VACUUM")
                    vacuums += 1
                }
            } catch {
                try? connection.execute("ROLLBACK")
                fail("\(db): transaction \(index): \(error)")
            }
        }
        print("{\"committed\": \(committed), \"rolledBack\": \(rolledBack), \"vacuums\": \(vacuums), \"nextSeq\": \(seq)}")
    }

    private func payload(_ random: inout SeededRandom) -> [UInt8] {
        let roll = Int.random(in: 0..<100, using: &random)
        let size: Int
        if roll < 80 {
            size = Int.random(in: 8...200, using: &random)
        } else if roll < 95 {
            size = Int.random(in: 200...8000, using: &random)
        } else {
            size = Int.random(in: 8000...max(8001, maxPayload), using: &random)
        }
        // Half random (incompressible), half repetitive: both LZ4 paths.
        let seed = UInt8.random(in: 0...255, using: &random)
        return (0..<size).map { i in i % 2 == 0 ? UInt8.random(in: 0...255, using: &random) : seed &+ UInt8(truncatingIfNeeded: i) }
    }
}

/// `check`: integrity and acknowledged transactions.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check PRAGMA integrity_check and that every acknowledged ledger row exists.")

    @Option var db: String
    @Option var ackFile: String?
    @Option var writer: Int64 = 1

    func run() throws {
        let connection: SQLiteConnection
        do {
            connection = try SQLiteConnection(path: db)
            let integrity = try connection.strings("PRAGMA integrity_check")
            guard integrity == ["ok"] else { fail("\(db): integrity_check: \(integrity.prefix(5).joined(separator: "; "))") }
            let ledger = try connection.integers("SELECT seq FROM ledger WHERE writer = ?", [.integer(writer)])
            var missing: [Int64] = []
            var acknowledged = 0
            if let ackFile {
                let text = (try? String(contentsOfFileSafely: ackFile)) ?? ""
                let present = Set(ledger)
                for line in text.split(separator: "\n") {
                    guard let seq = Int64(line) else { continue }
                    acknowledged += 1
                    if !present.contains(seq) { missing.append(seq) }
                }
            }
            guard missing.isEmpty else {
                fail("\(db): \(missing.count) acknowledged transactions missing, e.g. seq \(missing.prefix(5).map(String.init).joined(separator: ","))")
            }
            print("{\"integrity\": \"ok\", \"ledger\": \(ledger.count), \"acknowledged\": \(acknowledged)}")
        } catch {
            fail("\(db): \(error)")
        }
    }
}

extension String {
    /// Reads a whole file with plain read(2) (no Foundation in the testkit).
    init(contentsOfFileSafely path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        self = String(decoding: bytes, as: UTF8.self)
    }
}

/// The middle value (the upper one of an even count).
func median(of values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

/// `value` with two decimals ("0.25"), for ratios in tables.
func formatHundredths(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
}

/// Selects `last_seen` of random rows of `nodes` (ids 1...rows) for
/// `seconds`; returns selects per second.
func pointSelects(_ connection: SQLiteConnection, rows: Int, seconds: Double, seed: UInt64) throws -> Double {
    var random = SeededRandom(seed: seed)
    let start = now()
    var count = 0
    while now() - start < seconds {
        for _ in 0..<100 {
            _ = try connection.integer("SELECT last_seen FROM nodes WHERE id = ?", [.integer(Int64.random(in: 1...Int64(rows), using: &random))])
        }
        count += 100
    }
    return Double(count) / (now() - start)
}
