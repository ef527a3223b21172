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

    /// One pass over every database's log; returns how many files went.
    @discardableResult
    public func prune(now: Date = Date()) -> Int {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        let cutoff = now.addingTimeInterval(-seconds).timeIntervalSince1970
        var removed = 0
        for database in store.databases.withLock({ Array($0.values) }) {
            let directory = store.environment.logDirectory(for: database.path)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            let files = names.compactMap { try? LTXFileName(parsing: $0) }.sorted { $0.maxTXID < $1.maxTXID }
            for name in files.dropLast() {
                let path = directory + "/" + name.description
                guard case .success(let st) = Syscall.stat(path), Double(st.st_mtim.tv_sec) < cutoff else { break }
                if case .success = Syscall.unlink(at: AT_FDCWD, path) { removed += 1 }
            }
        }
        if removed > 0 { logger.debug("retention removed LTX files", metadata: ["files": "\(removed)"]) }
        return removed
    }
}
