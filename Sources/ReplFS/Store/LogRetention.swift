#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// Removes LTX files older than `retention` (config key `retention`), so
/// disk use stays bounded under a steady write load.
///
/// The newest file of each database is always kept: it records the
/// position. A replica whose position falls out of the retained files is
/// brought up to date with a snapshot instead of files.
public final class LogRetention: Sendable {
    private let store: Store
    private let retention: Duration
    private let logger: Logger
    private let running = Atomic(true)
    private let stopped = Semaphore()

    public init(store: Store, retention: Duration, logger: Logger) {
        self.store = store
        self.retention = retention
        self.logger = logger
    }

    public func start() {
        DetachedThread { [self] in loop() }.start()
    }

    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        stopped.wait()
    }

    private var interval: Double {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        return min(max(seconds / 4, 0.2), 10)
    }

    private func loop() {
        var last = Date.distantPast
        while running.load(ordering: .acquiring) {
            if Date().timeIntervalSince(last) >= interval {
                _ = prune()
                last = Date()
            }
            usleep(100_000)
        }
        stopped.post()
    }

    /// Per database, the TXID below which every file is known to be gone,
    /// so a pass looks only at the oldest files instead of listing a
    /// directory that can hold hundreds of thousands.
    private let oldest = Mutex<[String: TXID]>([:])

    /// One pass over every database's log; returns how many files went.
    @discardableResult
    public func prune(now: Date = Date()) -> Int {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        let cutoff = now.addingTimeInterval(-seconds).timeIntervalSince1970
        var removed = 0
        for database in store.databases.withLock({ Array($0.values) }) {
            let directory = store.environment.logDirectory(for: database.path)
            guard case .success(let directoryFD) = Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) else { continue }
            defer { Syscall.close(directoryFD) }
            let newest = database.position.txid
            var txid: TXID
            if let known = oldest.withLock({ $0[database.path] }) {
                txid = known
            } else {
                // First pass for this database: find its oldest file once.
                guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
                txid = names.compactMap { try? LTXFileName(parsing: $0) }.map(\.minTXID).min() ?? newest
            }
            while txid < newest {
                let path = directory + "/" + LTXFileName(minTXID: txid, maxTXID: txid).description
                switch Syscall.stat(path) {
                case .success(let st):
                    guard Double(st.st_mtim.tv_sec) < cutoff else { break }
                    let name = LTXFileName(minTXID: txid, maxTXID: txid).description
                    if case .success = store.recycler.recycle(directoryFD: directoryFD, name: name) { removed += 1 }
                    txid = txid.next
                    continue
                case .failure:
                    // Not there: a snapshot (1...N) or a gap; look again next time
                    // from the next TXID that has a file.
                    if let next = nextExisting(in: directory, after: txid, upTo: newest) {
                        txid = next
                        continue
                    }
                    txid = newest
                }
                break
            }
            oldest.withLock { $0[database.path] = txid }
        }
        if removed > 0 { logger.debug("retention removed LTX files", metadata: ["files": "\(removed)"]) }
        // What a burst of commits left free in the heap goes back once its
        // files expire, so an idle node's memory falls again.
        if removed >= 1_000 { Syscall.releaseFreeMemory() }
        return removed
    }

    /// The first TXID after `txid` that has a single-transaction file, looking
    /// at a bounded window (files are contiguous except around snapshots).
    private func nextExisting(in directory: String, after txid: TXID, upTo newest: TXID) -> TXID? {
        var candidate = txid.next
        var steps = 0
        while candidate < newest && steps < 64 {
            if case .success = Syscall.stat(directory + "/" + LTXFileName(minTXID: candidate, maxTXID: candidate).description) { return candidate }
            candidate = candidate.next
            steps += 1
        }
        return nil
    }
}
