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
/// With the etcd lease, only the replicas this node published as its
/// ``SynchronousMembers`` count, so that a successor after a crash knows
/// whom to compare itself with. The set changes when a commit cannot be
/// confirmed by it, and once a second (``maintain()``): candidates that
/// hold everything this node holds join it (the first set of a term needs
/// N of them), and a member that has not confirmed a commit one second old
/// leaves it, as long as N of those that stay hold every acknowledged
/// commit (the promise the set makes). A commit the members confirm looks
/// no further. Each change is written to etcd, under this node's lease,
/// before it counts.
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
        /// The term this state belongs to (with a published membership).
        var term: Epoch?
        /// The newest commit per database that waited here.
        var latest: [String: TXID] = [:]
        /// What this node promised is held by N members: the commits it
        /// reported, and everything it held when it first published a set
        /// in this term (the previous terms' acknowledged commits).
        var acknowledged: [String: TXID] = [:]
        /// Commits of the last ``lagLimit``, per database, oldest first.
        var recent: [String: [Commit]] = [:]
        /// The newest commit per database older than ``lagLimit``: a
        /// member that does not hold it is lagging.
        var lagMark: [String: TXID] = [:]
        /// A waiter is writing a membership change; others wait for it.
        var publishing = false
        /// When a publication last failed (etcd unreachable): retried after a pause.
        var publishFailedAt: ContinuousClock.Instant?
    }

    private struct Commit: Equatable, Sendable {
        var txid: TXID
        var at: ContinuousClock.Instant
    }

    public let settings: Settings
    private let replicas: @Sendable () -> [ConnectedReplica]
    private let positions: @Sendable () -> [String: TXID]
    private let membership: (any SynchronousMembership)?
    private let isPrimary: @Sendable () -> Bool
    private let waited: @Sendable (Duration) -> Void
    private let logger: Logger
    private let state = Monitor(State())
    private let waitingLog = LogThrottle(interval: .seconds(60))
    /// How long a waiting commit still waits once this node stops taking writes.
    static let graceAfterWritesStop = Duration.seconds(2)
    /// A member that has not confirmed a commit this old leaves the set.
    static let lagLimit = Duration.seconds(1)

    /// - Parameters:
    ///   - replicas: the replicas streaming from this node, with what each confirmed.
    ///   - positions: the TXID this node holds per database.
    ///   - membership: where the counted replicas are published (etcd);
    ///     nil: every candidate counts (static lease).
    ///   - isPrimary: whether this node still takes writes (a commit that
    ///     waits when it stops does not wait on).
    ///   - waited: told how long each commit waited (a metric).
    public init(
        settings: Settings, replicas: @escaping @Sendable () -> [ConnectedReplica], positions: @escaping @Sendable () -> [String: TXID] = { [:] },
        membership: (any SynchronousMembership)? = nil, isPrimary: @escaping @Sendable () -> Bool,
        waited: @escaping @Sendable (Duration) -> Void = { _ in }, logger: Logger
    ) {
        precondition(settings.replicas > 0)
        self.settings = settings
        self.replicas = replicas
        self.positions = positions
        self.membership = membership
        self.isPrimary = isPrimary
        self.waited = waited
        self.logger = logger
    }

    /// Whether this node goes on asynchronously now (the timeout passed with `sync-degrade: true`).
    public var isDegraded: Bool { state.value.degraded }

    /// The replicas whose confirmations count (published in this term), or
    /// nil when every candidate counts (no membership is published).
    public var members: [String]? {
        guard let membership else { return nil }
        return membership.publishedMembers()?.members ?? []
    }

    /// The connected replicas whose confirmations count now.
    private func counted() -> [ConnectedReplica] {
        let candidates = replicas().filter(\.candidate)
        guard let membership else { return candidates }
        guard let published = membership.publishedMembers(), !published.degraded else { return [] }
        return candidates.filter { published.members.contains($0.name) }
    }

    /// How many counted replicas hold `txid` of `database` (nodes, not
    /// connections: a node reconnecting may briefly have two).
    func confirmations(_ database: String, _ txid: TXID) -> Int {
        Set(counted().filter { $0.holds(database, txid) }.map(\.name)).count
    }

    /// A replica confirmed a transaction, or one left: waiting commits look
    /// again. Without a published membership, a degraded node also checks
    /// here whether it is synchronous again (with one, the next commit
    /// does, since it must publish that first).
    public func acknowledged() {
        let synchronousAgain = state.withLock { state -> Bool in
            state.generation &+= 1
            guard membership == nil, state.degraded else { return false }
            guard state.latest.allSatisfy({ confirmations($0.key, $0.value) >= settings.replicas }) else { return false }
            state.degraded = false
            return true
        }
        if synchronousAgain { noteSynchronousAgain() }
    }

    private func noteSynchronousAgain() {
        logger.notice("replicas caught up: commits wait for them again (synchronous)", metadata: ["sync-replicas": "\(settings.replicas)"])
    }

    private enum Outcome {
        case confirmed, asynchronous, notPrimary
        case publish(SynchronousMembers)
        /// The timeout passed with `sync-degrade`, and nothing needs publishing.
        case degraded
    }

    public func committed(database: String, txid: TXID) -> Result<Void, FileSystemError> {
        let started = ContinuousClock.now
        state.withLock { state in
            startTermIfNew(&state)
            if (state.latest[database] ?? TXID(0)) < txid { state.latest[database] = txid }
            noteRecent(database, txid, at: started, &state)
        }
        var wait = Wait(database: database, txid: txid, deadline: started + settings.timeout)
        while true {
            switch state.wait({ step(&$0, &wait) }) {
            case .publish(let members):
                publish(members, commit: (database, txid))
                continue
            case .degraded:
                noteDegraded(database: database, txid: txid)
                fallthrough
            case .confirmed, .asynchronous:
                waited(ContinuousClock.now - started)
                return .success(())
            case .notPrimary:
                waited(ContinuousClock.now - started)
                logger.error(
                    "a commit was not confirmed by the replicas before this node stopped being the primary: it is reported failed",
                    metadata: ["database": "\(database)", "txid": "\(txid)"])
                return .failure(FileSystemError(.notReplicated, "\(database) TXID \(txid) was not confirmed by \(settings.replicas) replica(s)"))
            }
        }
    }

    /// One waiting commit, as its steps see it.
    private struct Wait {
        let database: String
        let txid: TXID
        let deadline: ContinuousClock.Instant
        /// Since when this node no longer takes writes.
        var stoppedAt: ContinuousClock.Instant?
        var logged = false
    }

    /// Looks at the state once for a waiting commit: done (and how), or
    /// wait on. Called with the lock held; publishing happens outside it.
    private func step(_ state: inout State, _ wait: inout Wait) -> Monitor<State>.Step<Outcome> {
        let now = ContinuousClock.now
        let (database, txid) = (wait.database, wait.txid)
        if !isPrimary() {
            // A handoff stops writes while the replicas are still
            // confirming the last commits: give them a moment.
            if confirmations(database, txid) >= settings.replicas { return .done(.confirmed) }
            let since = wait.stoppedAt ?? now
            wait.stoppedAt = since
            return now - since >= Self.graceAfterWritesStop ? .done(.notPrimary) : .wait(until: now + .milliseconds(50))
        }
        if state.publishing { return .wait(until: now + .milliseconds(50)) }
        if !state.degraded, confirmations(database, txid) >= settings.replicas {
            if (state.acknowledged[database] ?? TXID(0)) < txid { state.acknowledged[database] = txid }
            return .done(.confirmed)
        }
        // Not confirmed by the members as they are: a change may help (a
        // first set, a caught-up candidate, the way back from degraded).
        // Members that lag leave by ``maintain()``, off the commit path.
        if let change = membershipChange(&state, now: now) {
            state.publishing = true
            return .done(.publish(change))
        }
        if state.degraded { return .done(.asynchronous) }
        guard now >= wait.deadline else { return .wait(until: min(wait.deadline, now + .milliseconds(100))) }
        if settings.degrade {
            guard let membership else {
                state.degraded = true
                return .done(.degraded)
            }
            // Going on unconfirmed must be published first; without the
            // lease it cannot be (the commit waits for the role check).
            guard let term = membership.term else { return .wait(until: now + .milliseconds(100)) }
            state.publishing = true
            let members = Set(membership.publishedMembers()?.members ?? [])
            return .done(.publish(SynchronousMembers(epoch: term.epoch, primary: term.node, replicas: settings.replicas, members: members, degraded: true)))
        }
        if !wait.logged {
            wait.logged = true
            if waitingLog.isDue() {
                logger.warning(
                    "a commit waits for replicas to confirm it (replication.sync-replicas; sync-degrade is false): it returns once they do",
                    metadata: ["database": "\(database)", "txid": "\(txid)", "sync-replicas": "\(settings.replicas)"])
            }
        }
        // The role is checked again every 100 ms.
        return .wait(until: now + .milliseconds(100))
    }

    private func noteDegraded(database: String, txid: TXID) {
        logger.warning(
            "replicas did not confirm a commit within sync-timeout: going on asynchronously until they catch up (sync-degrade)",
            metadata: ["database": "\(database)", "txid": "\(txid)", "sync-replicas": "\(settings.replicas)", "timeout": "\(settings.timeout)"])
    }

    /// Once a second on a primary that publishes its members: the changes
    /// no commit comes to make. A member that disconnected while nothing
    /// was written leaves (a crash then does not wait for it), a caught-up
    /// candidate joins, a new term's first set is published.
    private let maintenance = Locked<PeriodicTask?>(nil)

    public func startMaintenance() {
        guard membership != nil else { return }
        let task = PeriodicTask(every: .seconds(1)) { [self] in maintain() }
        maintenance.withLock { $0 = task }
        task.start()
    }

    public func stopMaintenance() {
        maintenance.value?.stop()
    }

    func maintain() {
        guard membership?.term != nil, isPrimary() else { return }
        let change: SynchronousMembers? = state.withLock { state in
            startTermIfNew(&state)
            guard !state.publishing, let change = membershipChange(&state, now: .now) else { return nil }
            state.publishing = true
            return change
        }
        if let change { publish(change, commit: nil) }
    }

    /// Writes a membership change (outside the lock), then lets every
    /// waiter look again. `commit`: the waiting commit that asked for it.
    private func publish(_ members: SynchronousMembers, commit: (database: String, txid: TXID)?) {
        let published = membership?.publish(members) ?? false
        let previous = membership == nil ? nil : state.withLock { $0.degraded }
        state.withLock { state in
            state.publishing = false
            state.generation &+= 1
            guard published else {
                state.publishFailedAt = .now
                return
            }
            state.publishFailedAt = nil
            state.degraded = members.degraded
        }
        guard published else {
            logger.warning("cannot publish the synchronous replicas in etcd; commits wait", metadata: ["members": "\(members.members)"])
            return
        }
        logger.notice(
            "synchronous replicas", metadata: ["members": "\(members.members.joined(separator: ","))", "degraded": "\(members.degraded)", "epoch": "\(members.epoch)"])
        if members.degraded, previous == false, let commit { noteDegraded(database: commit.database, txid: commit.txid) }
        if !members.degraded, previous == true { noteSynchronousAgain() }
    }

    /// A new term (this node became primary again): what the last one
    /// promised is not this one's.
    private func startTermIfNew(_ state: inout State) {
        guard let membership, let term = membership.term?.epoch, state.term != term else { return }
        // A publication in flight stays the only one.
        state = State(generation: state.generation &+ 1, term: term, publishing: state.publishing)
    }

    private func noteRecent(_ database: String, _ txid: TXID, at now: ContinuousClock.Instant, _ state: inout State) {
        var commits = state.recent[database] ?? []
        commits.append(Commit(txid: txid, at: now))
        if let fresh = commits.firstIndex(where: { now - $0.at < Self.lagLimit }), fresh > 0 {
            state.lagMark[database] = commits[fresh - 1].txid
            commits.removeFirst(fresh)
        }
        state.recent[database] = commits
    }

    /// The membership this node should publish now, if it differs from
    /// what is published: the first set of a term (N candidates holding
    /// everything this node holds), caught-up candidates joining, lagging
    /// members leaving while N of the rest hold every acknowledged commit,
    /// the way back from degraded.
    private func membershipChange(_ state: inout State, now: ContinuousClock.Instant) -> SynchronousMembers? {
        guard let membership, let term = membership.term else { return nil }
        if let failed = state.publishFailedAt, now - failed < .milliseconds(500) { return nil }
        let connected = replicas().filter(\.candidate)
        let held = positions()
        let holdersOfAll = Set(connected.filter { replica in held.allSatisfy { replica.holds($0.key, $0.value) } }.map(\.name))
        func make(_ members: Set<String>) -> SynchronousMembers {
            SynchronousMembers(epoch: term.epoch, primary: term.node, replicas: settings.replicas, members: members, degraded: false)
        }
        guard let published = membership.publishedMembers() else {
            guard holdersOfAll.count >= settings.replicas else { return nil }
            state.acknowledged = held
            return make(holdersOfAll)
        }
        if published.degraded {
            guard holdersOfAll.count >= settings.replicas else { return nil }
            state.acknowledged = held
            return make(holdersOfAll)
        }
        let current = Set(published.members)
        let lagging = current.filter { name in
            guard let replica = connected.first(where: { $0.name == name }) else { return true }
            return state.lagMark.contains { !replica.holds($0.key, $0.value) }
        }
        var next = current.union(holdersOfAll).subtracting(lagging)
        let keepers = connected.filter { replica in next.contains(replica.name) && state.acknowledged.allSatisfy { replica.holds($0.key, $0.value) } }
        if keepers.count < settings.replicas { next = current.union(holdersOfAll) }
        return next == current ? nil : make(next)
    }
}
