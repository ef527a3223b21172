import Logging

/// `replication.sync-replicas`: a commit through the mount returns to
/// SQLite only once N candidate replicas have confirmed it: said that a
/// TXID at or past it is durable in their log (`logged`, sent after the
/// replica's fdatasync and before it writes the pages; a replica of
/// protocol 4 confirms with `acknowledge`, once applied).
///
/// Confirmations are cumulative per database, and every waiting commit
/// checks them whenever any arrives, so commits of several databases share
/// each round trip instead of paying one each. The wait holds no lock of
/// the store. Commits to one database do not overlap, though: the wait
/// happens in the write of the commit (the WAL commit frame, the journal
/// invalidation), and SQLite holds its write lock across it (the kernel
/// serves the locks, so their release is not seen here); see
/// BENCHMARKS.md for what that costs.
///
/// When not enough replicas confirm within `sync-timeout`: with
/// `sync-degrade: false` the commit waits on (as PostgreSQL's synchronous
/// standbys do), and fails only if this node stops being the primary
/// meanwhile; with `true` this node goes on asynchronously, says so in
/// `status`, the log and a metric, and is synchronous again by itself once
/// enough replicas have confirmed everything committed (as MySQL's
/// semi-synchronous replication does).
public final class SynchronousReplication: CommitBarrier, Sendable {
    public struct Settings: Sendable {
        /// How many candidate replicas must hold a commit (N > 0).
        public var replicas: Int
        public var timeout: Duration
        public var degrade: Bool

        public init(replicas: Int, timeout: Duration, degrade: Bool) {
            self.replicas = replicas
            self.timeout = timeout
            self.degrade = degrade
        }
    }

    private struct State: Equatable, Sendable {
        /// Counts confirmations (and replicas leaving): waiters look again.
        var generation: UInt64 = 0
        /// Going on asynchronously since the timeout (sync-degrade: true).
        var degraded = false
        /// The newest commit per database that waited here.
        var latest: [String: TXID] = [:]
    }

    public let settings: Settings
    private let replicas: @Sendable () -> [ConnectedReplica]
    private let isPrimary: @Sendable () -> Bool
    private let waited: @Sendable (Duration) -> Void
    private let logger: Logger
    private let state = Monitor(State())
    private let waitingLog = LogThrottle(interval: .seconds(60))
    /// How long a waiting commit still waits once this node stops taking writes.
    static let graceAfterWritesStop = Duration.seconds(2)

    /// - Parameters:
    ///   - replicas: the replicas streaming from this node, with what each confirmed.
    ///   - isPrimary: whether this node still takes writes (a commit that
    ///     waits when it stops does not wait on).
    ///   - waited: told how long each commit waited (a metric).
    public init(
        settings: Settings, replicas: @escaping @Sendable () -> [ConnectedReplica], isPrimary: @escaping @Sendable () -> Bool,
        waited: @escaping @Sendable (Duration) -> Void = { _ in }, logger: Logger
    ) {
        precondition(settings.replicas > 0)
        self.settings = settings
        self.replicas = replicas
        self.isPrimary = isPrimary
        self.waited = waited
        self.logger = logger
    }

    /// Whether this node goes on asynchronously now (the timeout passed with `sync-degrade: true`).
    public var isDegraded: Bool { state.value.degraded }

    /// How many candidate replicas have confirmed `txid` of `database`.
    func confirmations(_ database: String, _ txid: TXID) -> Int {
        replicas().filter { $0.candidate && $0.holds(database, txid) }.count
    }

    /// A replica confirmed a transaction, or one left: waiting commits look
    /// again, and a degraded node checks whether it is synchronous again.
    public func acknowledged() {
        let synchronousAgain = state.withLock { state -> Bool in
            state.generation &+= 1
            guard state.degraded else { return false }
            guard state.latest.allSatisfy({ confirmations($0.key, $0.value) >= settings.replicas }) else { return false }
            state.degraded = false
            return true
        }
        if synchronousAgain {
            logger.notice("replicas caught up: commits wait for them again (synchronous)", metadata: ["sync-replicas": "\(settings.replicas)"])
        }
    }

    public func committed(database: String, txid: TXID) -> Result<Void, FileSystemError> {
        let started = ContinuousClock.now
        let deadline = started + settings.timeout
        state.withLock { state in
            if (state.latest[database] ?? TXID(0)) < txid { state.latest[database] = txid }
        }
        enum Outcome { case confirmed, asynchronous, degraded, notPrimary }
        var logged = false
        var stoppedAt: ContinuousClock.Instant?
        let outcome: Outcome = state.wait { state -> Monitor<State>.Step<Outcome> in
            if confirmations(database, txid) >= settings.replicas { return .done(.confirmed) }
            let now = ContinuousClock.now
            if !isPrimary() {
                // A handoff stops writes while the replicas are still
                // confirming the last commits: give them a moment.
                let since = stoppedAt ?? now
                stoppedAt = since
                return now - since >= Self.graceAfterWritesStop ? .done(.notPrimary) : .wait(until: now + .milliseconds(50))
            }
            if state.degraded { return .done(.asynchronous) }
            guard now >= deadline else { return .wait(until: min(deadline, now + .milliseconds(100))) }
            if settings.degrade {
                state.degraded = true
                return .done(.degraded)
            }
            if !logged {
                logged = true
                if waitingLog.isDue() {
                    logger.warning(
                        "a commit waits for replicas to confirm it (replication.sync-replicas; sync-degrade is false): it returns once they do",
                        metadata: ["database": "\(database)", "txid": "\(txid)", "sync-replicas": "\(settings.replicas)"])
                }
            }
            // The role is checked again every 100 ms.
            return .wait(until: now + .milliseconds(100))
        }
        waited(ContinuousClock.now - started)
        switch outcome {
        case .confirmed, .asynchronous:
            return .success(())
        case .degraded:
            logger.warning(
                "replicas did not confirm a commit within sync-timeout: going on asynchronously until they catch up (sync-degrade)",
                metadata: ["database": "\(database)", "txid": "\(txid)", "sync-replicas": "\(settings.replicas)", "timeout": "\(settings.timeout)"])
            return .success(())
        case .notPrimary:
            logger.error(
                "a commit was not confirmed by the replicas before this node stopped being the primary: it is reported failed",
                metadata: ["database": "\(database)", "txid": "\(txid)"])
            return .failure(FileSystemError(.notReplicated, "\(database) TXID \(txid) was not confirmed by \(settings.replicas) replica(s)"))
        }
    }
}
