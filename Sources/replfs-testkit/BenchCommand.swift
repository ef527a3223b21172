import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

/// `bench`: the same SQLite workload on a native directory and on the mount,
/// interleaved in one run, reported as ratios.
///
/// The machine is shared and noisy, so absolute rates drift; running both
/// sides alternately (native first on odd rounds, mounted first on even
/// ones) and comparing medians keeps the ratio meaningful.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure write and read rates natively and through the mount; print ratios.")

    @Option(help: "A directory outside the mount, on the same disk as the data directory.") var native: String
    @Option(help: "A directory inside the mount.") var mounted: String
    @Option(help: "Seconds per measurement.") var seconds = 3.0
    @Option(help: "Rounds per scenario (median is reported).") var rounds = 3
    @Option(help: "Comma-separated scenarios: wal-normal, wal-full, delete-full, reads.") var scenarios = "wal-normal,wal-full,delete-full,reads"

    struct Scenario {
        var key: String
        var title: String
        var target: Double
        var measure: (String, Double) throws -> Double
    }

    func run() throws {
        let all: [Scenario] = [
            Scenario(key: "wal-normal", title: "insert tx, WAL, synchronous=NORMAL", target: 0.25) { try writes(dir: $0, mode: "wal", sync: "normal", seconds: $1) },
            Scenario(key: "wal-full", title: "insert tx, WAL, synchronous=FULL", target: 0.6) { try writes(dir: $0, mode: "wal", sync: "full", seconds: $1) },
            Scenario(key: "delete-full", title: "insert tx, DELETE, synchronous=FULL", target: 0.5) { try writes(dir: $0, mode: "delete", sync: "full", seconds: $1) },
            Scenario(key: "reads", title: "cached point selects, WAL", target: 0.9) { try reads(dir: $0, seconds: $1) },
        ]
        let wanted = Set(scenarios.split(separator: ",").map(String.init))
        print("| scenario | native /s | replfs /s | ratio | target |")
        print("|---|---:|---:|---:|---:|")
        for scenario in all where wanted.contains(scenario.key) {
            var nativeRates: [Double] = []
            var mountedRates: [Double] = []
            for round in 0..<rounds {
                if round % 2 == 0 {
                    nativeRates.append(try scenario.measure(native, seconds))
                    mountedRates.append(try scenario.measure(mounted, seconds))
                } else {
                    mountedRates.append(try scenario.measure(mounted, seconds))
                    nativeRates.append(try scenario.measure(native, seconds))
                }
            }
            let nativeRate = median(of: nativeRates)
            let mountedRate = median(of: mountedRates)
            let ratio = mountedRate / nativeRate
            print(
                "| \(scenario.title) | \(Int(nativeRate)) | \(Int(mountedRate)) | \(formatHundredths(ratio))x | >= \(formatHundredths(scenario.target))x \(ratio >= scenario.target ? "(met)" : "(NOT met)") |"
            )
        }
    }

    private func freshDatabase(_ dir: String, _ name: String) -> String {
        let path = "\(dir)/\(name)-\(getpid()).db"
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
        return path
    }

    private func removeDatabase(_ path: String) {
        for suffix in ["-wal", "-shm", "-journal", ""] { unlink(path + suffix) }
    }

    /// One row per transaction, BEGIN IMMEDIATE, as Headscale writes.
    func writes(dir: String, mode: String, sync: String, seconds: Double) throws -> Double {
        let path = freshDatabase(dir, "bench-\(mode)-\(sync)")
        defer { removeDatabase(path) }
        let rate: Double
        do {
            let connection = try SQLiteConnection(path: path)
            _ = try connection.strings("PRAGMA journal_mode=\(mode)")
            try connection.execute("PRAGMA synchronous=\(sync)")
            try connection.execute("CREATE TABLE nodes(id INTEGER PRIMARY KEY, machine_key TEXT, hostname TEXT, last_seen INTEGER)")
            let row: (Int64) -> [SQLiteConnection.Value] = { i in
                [.text("mkey:\(String(repeating: "ab12", count: 16))\(i)"), .text("host-\(i).example.internal"), .integer(i)]
            }
            for i in 0..<100 {
                try connection.execute("BEGIN IMMEDIATE")
                try connection.run("INSERT INTO nodes(machine_key, hostname, last_seen) VALUES(?, ?, ?)", row(Int64(i)))
                try connection.execute("COMMIT")
            }
            let start = now()
            var count: Int64 = 0
            while now() - start < seconds {
                try connection.execute("BEGIN IMMEDIATE")
                try connection.run("INSERT INTO nodes(machine_key, hostname, last_seen) VALUES(?, ?, ?)", row(count))
                try connection.execute("COMMIT")
                count += 1
            }
            rate = Double(count) / (now() - start)
        }
        return rate
    }

    /// Point selects on a warm WAL database.
    func reads(dir: String, seconds: Double) throws -> Double {
        let path = freshDatabase(dir, "bench-reads")
        defer { removeDatabase(path) }
        let rate: Double
        do {
            let connection = try SQLiteConnection(path: path)
            _ = try connection.strings("PRAGMA journal_mode=wal")
            try connection.execute("CREATE TABLE nodes(id INTEGER PRIMARY KEY, hostname TEXT, last_seen INTEGER)")
            try connection.execute("BEGIN")
            for i in 1...10_000 {
                try connection.run("INSERT INTO nodes(id, hostname, last_seen) VALUES(?, ?, ?)", [.integer(Int64(i)), .text("host-\(i).example.internal"), .integer(Int64(i))])
            }
            try connection.execute("COMMIT")
            try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _ = try connection.integers("SELECT count(*) FROM nodes")
            rate = try pointSelects(connection, rows: 10_000, seconds: seconds, seed: 7)
        }
        return rate
    }
}
