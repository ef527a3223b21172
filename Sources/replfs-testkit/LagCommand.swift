import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

/// `lag`: time from COMMIT returning on the primary to the row being
/// visible to a reader on a replica, one transaction at a time.
///
/// Both connections are in this process, so one clock measures both ends.
struct LagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lag", abstract: "Measure replication lag: commit on the primary to visibility on a replica.")

    @Option(help: "The database through the primary's mount.") var primary: String
    @Option(help: "The same database through a replica's mount.") var replica: String
    @Option var transactions = 10_000
    @Option var journalMode = "wal"
    @Option(help: "Give up on one transaction after this many seconds.") var timeout = 10.0

    func run() throws {
        do {
            let writer = try SQLiteConnection(path: primary)
            _ = try writer.strings("PRAGMA journal_mode=\(journalMode)")
            try writer.execute("CREATE TABLE IF NOT EXISTS lag(id INTEGER PRIMARY KEY, at INTEGER)")
            let start = try writer.integer("SELECT coalesce(max(id), 0) FROM lag")
            // Wait for the table to reach the replica.
            var reader: SQLiteConnection?
            let deadline = now() + 30
            while reader == nil {
                if let connection = try? SQLiteConnection(path: replica), (try? connection.integer("SELECT coalesce(max(id), 0) FROM lag")) != nil {
                    reader = connection
                } else if now() > deadline {
                    fail("the table never reached the replica")
                } else {
                    usleep(10_000)
                }
            }
            guard let reader else { return }
            var samples: [Double] = []
            samples.reserveCapacity(transactions)
            for i in 1...transactions {
                let id = start + Int64(i)
                try writer.execute("BEGIN IMMEDIATE")
                try writer.run("INSERT INTO lag(id, at) VALUES(?, ?)", [.integer(id), .integer(Int64(now() * 1e9))])
                try writer.execute("COMMIT")
                let committed = now()
                while try reader.integer("SELECT coalesce(max(id), 0) FROM lag") < id {
                    if now() - committed > timeout { fail("transaction \(id) not visible after \(timeout) s") }
                    usleep(20)
                }
                samples.append(now() - committed)
            }
            samples.sort()
            func percentile(_ p: Double) -> Double { samples[min(samples.count - 1, Int(Double(samples.count) * p))] * 1000 }
            print(
                "{\"transactions\": \(transactions), \"p50_ms\": \(rounded(percentile(0.5))), \"p90_ms\": \(rounded(percentile(0.9))), "
                    + "\"p99_ms\": \(rounded(percentile(0.99))), \"max_ms\": \(rounded(samples.last! * 1000))}")
        } catch {
            fail("\(error)")
        }
    }

    private func rounded(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }
}
