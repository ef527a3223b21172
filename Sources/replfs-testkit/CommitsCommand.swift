import ArgumentParser
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `commits`: one-row transactions (BEGIN IMMEDIATE, as Headscale writes)
/// from several writers at once, each with its own connection, on one
/// database: the rate and the latency of a transaction (p50, p99).
///
/// Writers that find the write lock taken wait as applications do
/// (SQLite's busy timeout, 5 s).
struct CommitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commits",
        abstract: "One-row transactions from N concurrent writers: rate and latency, as JSON.")

    @Option var db: String
    @Option var writers = 1
    @Option var seconds = 3.0
    @Option var journalMode = "wal"
    @Option var synchronous = "normal"

    func run() throws {
        let setup = try SQLiteConnection(path: db)
        _ = try setup.strings("PRAGMA journal_mode=\(journalMode)")
        try setup.execute("CREATE TABLE IF NOT EXISTS nodes(id INTEGER PRIMARY KEY, machine_key TEXT, hostname TEXT, last_seen INTEGER)")
        let results = Mutex<(latencies: [UInt64], failure: String?)>(([], nil))
        let done = DispatchSemaphore(value: 0)
        let start = now()
        let (db, seconds, synchronous) = (self.db, self.seconds, self.synchronous)
        for writer in 0..<writers {
            Thread {
                defer { done.signal() }
                do {
                    let connection = try SQLiteConnection(path: db)
                    try connection.execute("PRAGMA synchronous=\(synchronous)")
                    var mine: [UInt64] = []
                    var i = Int64(writer) << 32
                    while now() - start < seconds {
                        let began = DispatchTime.now().uptimeNanoseconds
                        try connection.execute("BEGIN IMMEDIATE")
                        _ = try connection.run(
                            "INSERT INTO nodes(machine_key, hostname, last_seen) VALUES(?, ?, ?)",
                            [.text("mkey:\(String(repeating: "ab12", count: 16))\(i)"), .text("host-\(i).example.internal"), .integer(i)])
                        try connection.execute("COMMIT")
                        mine.append(DispatchTime.now().uptimeNanoseconds - began)
                        i += 1
                    }
                    results.withLock { $0.latencies += mine }
                } catch {
                    results.withLock { $0.failure = "\(error)" }
                }
            }.start()
        }
        for _ in 0..<writers { done.wait() }
        let elapsed = now() - start
        let (latencies, failure) = results.withLock { $0 }
        if let failure { throw ValidationError(failure) }
        let all = latencies.sorted()
        guard !all.isEmpty else { throw ValidationError("no transaction committed") }
        func percentile(_ p: Double) -> Double { Double(all[min(all.count - 1, Int(Double(all.count) * p))]) / 1e6 }
        print(
            String(
                format: "{\"writers\": %d, \"tx_per_s\": %.0f, \"p50_ms\": %.3f, \"p99_ms\": %.3f}", writers, Double(all.count) / elapsed,
                percentile(0.5), percentile(0.99)))
    }
}
