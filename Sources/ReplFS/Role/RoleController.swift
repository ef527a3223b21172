import Dispatch
import Foundation
import Logging
import Synchronization

/// Moves this node between primary and replica, and is the one place that
/// knows which it is.
///
/// The lease keeper (static or etcd) decides; this type carries it out in
/// an order that keeps the invariants:
/// - becoming primary: stop following (everything received is applied),
///   persist the epoch, accept writes, then start the application; the
///   virtual IP and the `on-primary` hook follow once it is ready;
/// - stepping down: remove the virtual IP, stop the application, stop
///   writes (waiting for those in progress), stop streaming, then follow
///   the new primary (and run `on-replica`);
/// - losing the lease: stop writes first (the deadline is near), then the
///   virtual IP and the application.
///
/// Transitions run one at a time on a serial queue, never on the event loop
/// or the apply thread that reported what caused them.
public final class RoleController: ReplicationRole, ReplicaClientDelegate, LeaseHost, @unchecked Sendable {
    public let store: Store
    public let feed: ChangeFeed
    public let server: ReplicationServer
    public let identity: ReplicaClient.Identity
    private let stateFile: NodeStateFile
    private let application: (any SupervisedApplication)?
    /// The virtual IP and the role hooks (``PrimaryAnnouncer``), if any.
    private let announcer: (any RoleAnnouncing)?
    private let logger: Logger
    private let queue = DispatchQueue(label: "replfs.role")
    private let state: Locked<State>
    private let leaseSlot = Locked<(any LeaseKeeper)?>(nil)

    public init(
        store: Store, feed: ChangeFeed, server: ReplicationServer, identity: ReplicaClient.Identity, stateFile: NodeStateFile,
        application: (any SupervisedApplication)?, announcer: (any RoleAnnouncing)? = nil, logger: Logger
    ) throws(StoreError) {
        self.store = store
        self.feed = feed
        self.server = server
        self.identity = identity
        self.stateFile = stateFile
        self.application = application
        self.announcer = announcer
        self.logger = logger
        let stored = try stateFile.load()
        // Nothing is written until a lease keeper decides.
        state = Locked(State(role: .fenced, epoch: stored.epoch, primary: nil))
        store.stopWrites()
        queue.setSpecific(key: Self.onRoleQueue, value: true)
        server.setRole(self)
    }

    /// The lease keeper that decides (set once at startup).
    public func setLease(_ lease: any LeaseKeeper) {
        leaseSlot.withLock { $0 = lease }
    }

    var lease: (any LeaseKeeper)? { leaseSlot.withLock { $0 } }

    public var me: Peer { Peer(name: identity.node, address: identity.address) }

    public var role: NodeRole { state.withLock { $0.role } }

    public var epoch: Epoch { state.withLock { $0.epoch } }

    public var primary: Peer? { state.withLock { $0.primary } }

    var client: ReplicaClient? { state.withLock { $0.client } }

    /// The persisted state (highest epoch seen, its holder).
    public func storedState() -> NodeState {
        (try? stateFile.load()) ?? NodeState(epoch: epoch, primary: nil)
    }

    public var snapshot: Snapshot {
        let (role, epoch, primary, client, lastError, lastErrorAt) = state.withLock {
            ($0.role, $0.epoch, $0.primary, $0.client, $0.lastError, $0.lastErrorAt)
        }
        return Snapshot(
            role: role, epoch: epoch, primary: primary, writable: store.isWritable, upstream: client?.status,
            replicas: role == .primary || role == .handingOff ? server.replicas : [], lastError: lastError, lastErrorAt: lastErrorAt)
    }

    private func noteError(_ message: String) {
        state.withLock { $0.lastError = message }
    }

    // MARK: - Transitions (on the role queue)

    /// Runs `body` on the role queue and waits for it (at once if this is
    /// the role queue already: a lease reporting from a handoff it was given).
    func perform<T>(_ body: () -> T) -> T {
        DispatchQueue.getSpecific(key: Self.onRoleQueue) == true ? body() : queue.sync(execute: body)
    }

    private static let onRoleQueue = DispatchSpecificKey<Bool>()

    // MARK: - LeaseHost

    public func report(_ event: LeaseEvent) {
        switch event {
        case .elected(let epoch, let deadline, let keepLease):
            perform { becomePrimary(epoch: epoch, deadline: deadline, keepLease: keepLease) }
        case .renewed(let deadline):
            store.extendWrites(until: deadline)
        case .following(let primary, let epoch):
            perform { follow(primary, epoch: epoch) }
        case .lost(let reason):
            fence(reason: reason)
        case .failed(let message):
            noteError(message)
        }
    }

    public func positions() -> [(database: String, position: Position)] {
        store.positions()
    }

    /// Runs `body` on the role queue later.
    func schedule(_ body: @escaping @Sendable () -> Void) {
        queue.async(execute: body)
    }

    /// Persists a new epoch and its holder, if higher than what is stored.
    private func record(epoch: Epoch, primary: String) -> Bool {
        do {
            var stored = try stateFile.load()
            if epoch > stored.epoch || (epoch == stored.epoch && stored.primary != primary) {
                stored = NodeState(epoch: max(epoch, stored.epoch), primary: primary)
                try stateFile.save(stored)
            }
            return true
        } catch {
            logger.error("cannot persist the node state; not changing role", metadata: ["error": "\(error)"])
            noteError("cannot persist node state: \(error)")
            return false
        }
    }

    /// Becomes the primary at `epoch`. Call on the role queue.
    ///
    /// Stops following first: the apply thread finishes what was received,
    /// so the node writes on top of everything it could get. `deadline` is
    /// when the lease could expire (etcd); writes stop by themselves then.
    ///
    /// That last apply can wait for SQLite readers (a rollback-journal
    /// database on a replica is written only between read transactions), for
    /// as long as they read. Meanwhile `keepLease` is called every 100 ms: it
    /// renews the lease when due and returns the deadline it allows, or nil
    /// once the lease is lost. A node whose lease ran out meanwhile does not
    /// take office (it never acts on a lease it no longer holds).
    private func becomePrimary(epoch: Epoch, deadline: UInt64? = nil, keepLease: (() -> UInt64?)? = nil) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !state.withLock({ $0.closed }) else { return }
        var deadline = deadline
        if let client = state.withLock({ $0.client }) {
            deadline = stopFollowing(client, deadline: deadline, keepLease: keepLease)
            state.withLock { $0.client = nil }
        }
        if let deadline, MonotonicClock.nanoseconds() >= deadline {
            logger.warning("the lease was lost while this node waited to take office; it stays a replica", metadata: ["epoch": "\(epoch)"])
            noteError("lost the lease at epoch \(epoch) while waiting for readers to let the last replicated transactions apply")
            return
        }
        guard record(epoch: epoch, primary: identity.node) else { return }
        state.withLock {
            $0.role = .primary
            $0.epoch = epoch
            $0.primary = me
            $0.lastError = nil
        }
        store.setObserver(feed)
        store.startWrites(epoch: epoch, until: deadline)
        logger.notice("this node is now the primary", metadata: ["epoch": "\(epoch)"])
        application?.start()
        announcer?.becamePrimary(epoch: epoch)
    }

    /// Stops the replica stream, keeping the lease with `keepLease` while its
    /// last apply waits (see ``becomePrimary(epoch:deadline:keepLease:)``).
    /// Returns the latest deadline: 1 (passed) once the lease is lost.
    private func stopFollowing(_ client: ReplicaClient, deadline: UInt64?, keepLease: (() -> UInt64?)?) -> UInt64? {
        guard let keepLease else {
            client.stop()
            return deadline
        }
        let stopped = Semaphore()
        DetachedThread { client.stop(); stopped.post() }.start()
        var deadline = deadline
        var waitingSince: ContinuousClock.Instant?
        while !stopped.wait(timeout: .milliseconds(100)) {
            if waitingSince == nil {
                waitingSince = .now
                logger.notice("taking office: waiting for the last replicated transactions to apply (readers hold the database); keeping the lease meanwhile")
            }
            guard deadline != 1 else { continue }  // lost: only the stream is waited for
            deadline = keepLease() ?? 1
        }
        if let waitingSince {
            logger.notice("the last replicated transactions applied", metadata: ["waited-ms": "\((ContinuousClock.now - waitingSince).milliseconds)"])
        }
        return deadline
    }

    /// Follows `primary` (at `epoch`, or at least what this node has seen).
    /// Call on the role queue.
    private func follow(_ primary: Peer, epoch: Epoch) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard primary.name != identity.node, !state.withLock({ $0.closed }) else { return }
        let (role, current, currentClient) = state.withLock { ($0.role, $0.primary, $0.client) }
        if role == .replica, current == primary, currentClient != nil {
            if epoch > self.epoch {
                _ = record(epoch: epoch, primary: primary.name)
                state.withLock { $0.epoch = epoch }
            }
            return
        }
        if role == .primary || role == .handingOff {
            stepDown()
        }
        let highest = max(epoch, self.epoch)
        guard record(epoch: highest, primary: primary.name) else { return }
        currentClient?.stop()
        let client = ReplicaClient(store: store, target: primary, identity: identity, epoch: highest, delegate: self, logger: logger)
        state.withLock {
            $0.role = .replica
            $0.epoch = highest
            $0.primary = primary
            $0.client = client
        }
        logger.notice("following the primary", metadata: ["primary": "\(primary)", "epoch": "\(highest)"])
        client.start()
        announcer?.becameReplica(epoch: highest, primary: primary.name)
    }

    /// Stops being a writer in the planned order: clients sent elsewhere
    /// (the virtual IP), application, writes, streams.
    private func stepDown() {
        announcer?.leavingPrimary()
        application?.stop()
        store.stopWrites()
        store.setObserver(nil)
        server.closeStreams()
    }

    /// The lease is lost: writes stop at once, then the application.
    /// Call on the role queue (or from the lease keeper's thread: writes are
    /// stopped before waiting for the queue).
    private func fence(reason: String) {
        store.stopWrites(reason: "lost its lease (\(reason))")
        perform {
            let role = state.withLock { $0.role }
            guard role == .primary || role == .handingOff else { return }
            logger.error("lost the lease: this node stopped accepting writes", metadata: ["reason": "\(reason)"])
            announcer?.leavingPrimary()
            application?.stop(immediately: true)
            store.setObserver(nil)
            server.closeStreams()
            state.withLock {
                $0.role = .fenced
                $0.primary = nil
                $0.lastError = "lost the lease: \(reason)"
            }
            announcer?.becameReplica(epoch: epoch, primary: nil)
        }
    }

    /// Shutdown (SIGTERM): the application first, then writes, then the
    /// link to the primary. No transition happens after this.
    public func shutdown() {
        perform {
            state.withLock { $0.closed = true }
            announcer?.leavingPrimary()
            application?.stop()
            store.stopWrites(reason: "is shutting down")
            state.withLock { $0.client }?.stop()
            if role == .primary { waitForReplicasToConfirm(timeout: Self.confirmTimeout) }
        }
    }

    /// How long a primary stopping cleanly waits for its replicas to confirm
    /// its last transactions, after its application stopped.
    static let confirmTimeout = Duration.seconds(5)

    /// A primary stopping cleanly, writes closed, before its lease goes:
    /// waits until every connected replica has acknowledged (durably) the
    /// last transaction of every database, so that whichever takes over
    /// holds them. Bounded; a replica that does not confirm is named.
    private func waitForReplicasToConfirm(timeout: Duration) {
        let targets = store.positions()
        guard !targets.isEmpty else { return }
        func behind() -> [String] {
            server.replicas.filter { replica in
                targets.contains { (replica.acknowledged[$0.database] ?? TXID(0)) < $0.position.txid }
            }.map(\.name).sorted()
        }
        var lagging = behind()
        guard !lagging.isEmpty else { return }
        logger.notice("stopping: waiting for the replicas to confirm the last transactions before the lease goes", metadata: ["replicas": "\(lagging)"])
        let started = ContinuousClock.now
        while !lagging.isEmpty, ContinuousClock.now - started < timeout {
            Thread.sleep(forTimeInterval: 0.005)
            lagging = behind()
        }
        if lagging.isEmpty {
            logger.notice("the replicas hold every transaction", metadata: ["took-ms": "\((ContinuousClock.now - started).milliseconds)"])
        } else {
            logger.warning("stopping without these replicas' confirmation of the last transactions", metadata: ["replicas": "\(lagging)", "waited": "\(timeout)"])
        }
    }

    /// Watches for the lease deadline passing while this node is primary
    /// (the store already refuses writes then): fences at once, so the
    /// application stops within 50 ms of the deadline, or of this process
    /// resuming after it was stopped past it.
    public func watchDeadline() {
        DetachedThread { [self] in
            while !state.withLock({ $0.closed }) {
                usleep(50_000)
                if role == .primary, !store.isWritable, lease?.currentDeadline.map({ MonotonicClock.nanoseconds() >= $0 }) == true {
                    fence(reason: "the lease deadline passed without a renewal")
                }
            }
        }.start()
    }

    // MARK: - Handoff

    /// Hands the primary role to `target` (a connected replica): stops the
    /// application and writes, sends the handoff marker after the last
    /// change, and waits until the target confirms it has applied
    /// everything. Then this node follows it. Call on the role queue.
    func handOff(to target: String, timeout: Duration = .seconds(10)) -> Result<RoleChange, RoleError> {
        dispatchPrecondition(condition: .onQueue(queue))
        let started = ContinuousClock.now
        guard state.withLock({ $0.role }) == .primary else {
            return .failure(RoleError(.notPrimary, "\(identity.node) is not the primary"))
        }
        guard let replica = server.replicas.first(where: { $0.name == target }) else {
            return .failure(RoleError(.noCandidate, "\(target) is not connected to the primary \(identity.node)"))
        }
        guard replica.candidate else {
            return .failure(RoleError(.notCandidate, "\(target) has lease.candidate: false and cannot become primary"))
        }
        let lease = self.lease
        let newEpoch = lease?.handoffEpoch(after: epoch) ?? epoch.next
        let peer = Peer(name: target, address: replica.address)
        logger.notice("handing the primary role over", metadata: ["to": "\(peer)", "epoch": "\(newEpoch)"])
        announcer?.leavingPrimary()
        application?.stop()
        store.stopWrites(reason: "handed the primary role to \(target)")
        if newEpoch.isKnown, !record(epoch: newEpoch, primary: target) {
            store.startWrites(epoch: epoch, until: lease?.currentDeadline)
            application?.start()
            announcer?.becamePrimary(epoch: epoch)
            return .failure(RoleError(.failed, "cannot persist the node state"))
        }
        let accepted = Semaphore()
        state.withLock {
            $0.role = .handingOff
            $0.handoff = (target, accepted)
        }
        feed.publish(ReplicationMessage.Handoff(node: target, address: replica.address, epoch: newEpoch))
        let confirmed = accepted.wait(timeout: timeout)
        state.withLock { $0.handoff = nil }
        guard confirmed else {
            // The target never confirmed: it may be gone. Resume, at a newer
            // epoch than the one offered, so that if the target did take over
            // and its confirmation was lost, the cluster follows this node.
            let resumed: Epoch? = lease == nil ? newEpoch.next : lease?.resumeAfterFailedHandoff(offered: newEpoch)
            if let resumed {
                becomePrimary(epoch: resumed, deadline: lease?.currentDeadline)
            } else {
                state.withLock { $0.role = .fenced }
                announcer?.becameReplica(epoch: epoch, primary: nil)
            }
            let message = "\(target) did not confirm the handoff within \(timeout)" + (resumed != nil ? "; \(identity.node) resumed as primary" : "")
            noteError(message)
            return .failure(RoleError(.failed, message))
        }
        lease?.released(to: peer)
        follow(peer, epoch: newEpoch)
        return .success(RoleChange(primary: target, epoch: newEpoch, duration: ContinuousClock.now - started))
    }

    /// `replfsd demote`: hands over to the connected candidate that has
    /// acknowledged the most (ties: by name).
    public func demote() -> Result<RoleChange, RoleError> {
        perform {
            guard state.withLock({ $0.role }) == .primary else {
                return .failure(RoleError(.notPrimary, "\(identity.node) is not the primary; demote runs on the primary"))
            }
            let positions = Dictionary(store.positions().map { ($0.database, $0.position.txid.rawValue) }, uniquingKeysWith: { a, _ in a })
            func lag(_ replica: ConnectedReplica) -> UInt64 {
                positions.reduce(0) { sum, entry in sum + (entry.value &- min(entry.value, replica.acknowledged[entry.key]?.rawValue ?? 0)) }
            }
            let candidates = server.replicas.filter(\.candidate).sorted { (lag($0), $0.name) < (lag($1), $1.name) }
            guard let best = candidates.first else {
                return .failure(RoleError(.noCandidate, "no candidate replica is connected: nothing changed, \(identity.node) stays primary"))
            }
            return handOff(to: best.name)
        }
    }

    /// Why this node must not take the lead now, if it must not: its
    /// database files do not hold what its position says (an apply stalled
    /// on a full disk). Promotion, handoffs and campaigns wait for it.
    public var cannotLead: String? {
        store.applyStall
    }

    /// `replfsd promote` on a replica: asks the primary to hand over, and
    /// waits until this node is the primary. With `force` and the primary
    /// unreachable, takes over without it (the lease decides whether that
    /// is allowed).
    public func promote(force: Bool, timeout: Duration = .seconds(20)) -> Result<RoleChange, RoleError> {
        let started = ContinuousClock.now
        guard identity.candidate else {
            return .failure(RoleError(.notCandidate, "\(identity.node) has lease.candidate: false and cannot become primary"))
        }
        if let reason = cannotLead {
            return .failure(RoleError(.notReady, "\(identity.node) cannot become primary: \(reason)"))
        }
        let (role, client, asked) = state.withLock { ($0.role, $0.client, $0.primary) }
        if role == .primary {
            return .success(RoleChange(primary: identity.node, epoch: epoch, duration: .zero))
        }
        if let client, client.requestHandoff() {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let (role, primary) = state.withLock { ($0.role, $0.primary) }
                if role == .primary {
                    return .success(RoleChange(primary: identity.node, epoch: epoch, duration: ContinuousClock.now - started))
                }
                if role == .replica, let primary, primary.name != identity.node, primary.name != asked?.name {
                    // Another node took over meanwhile (a lease race or an
                    // operator elsewhere): this node follows it, not in charge.
                    return .failure(RoleError(.conflict, "\(primary.name) became the primary instead; \(identity.node) follows it"))
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
            return .failure(RoleError(.failed, "the primary did not hand over within \(timeout)"))
        }
        let held = store.positions().map { "\($0.database) through TXID \($0.position.txid)" }.joined(separator: ", ")
        let holds = held.isEmpty ? "no database" : held
        guard force else {
            let target = state.withLock { $0.primary }.map { "\($0)" } ?? "unknown"
            return .failure(RoleError(
                .unreachable,
                "the primary (\(target)) is not connected, so this node may lack commits it acknowledged (this node holds \(holds); "
                    + "anything the primary committed after that, another replica may hold); use --force to take over without it "
                    + "(what it committed and this node lacks is kept aside when it rejoins)"))
        }
        guard let lease else { return .failure(RoleError(.failed, "no lease keeper")) }
        logger.warning(
            "promote --force: taking over without the primary; commits it acknowledged after what this node holds are not on this node",
            metadata: ["holds": "\(holds)", "primary": "\(state.withLock { $0.primary }.map { "\($0)" } ?? "unknown")"])
        return lease.forcePromotion().map { epoch in
            RoleChange(primary: identity.node, epoch: epoch, duration: ContinuousClock.now - started)
        }
    }

    // MARK: - ReplicationRole (event loop: never block)

    public var replicationView: ReplicationView {
        state.withLock { ReplicationView(isPrimary: $0.role == .primary, epoch: $0.epoch, primary: $0.primary) }
    }

    public func handoffRequested(by node: String) {
        schedule { [self] in
            switch handOff(to: node) {
            case .success(let change):
                logger.notice("handed over on request", metadata: ["to": "\(change.primary)", "epoch": "\(change.epoch)"])
            case .failure(let error):
                logger.warning("handoff requested by a replica did not happen", metadata: ["replica": "\(node)", "reason": "\(error)"])
            }
        }
    }

    public func handoffAccepted(by node: String) {
        state.withLock { state in
            if let handoff = state.handoff, handoff.target == node { handoff.accepted.post() }
        }
    }

    // MARK: - ReplicaClientDelegate (event loop or apply thread: never block)

    public func replicaClient(_ client: ReplicaClient, redirectedBy node: String, to view: ReplicationView) {
        guard let primary = view.primary, primary.name != identity.node, view.epoch >= epoch else { return }
        schedule { [self] in
            guard state.withLock({ $0.client }) === client else { return }
            // Only a peer that is itself following can name a primary; the
            // lease keeper confirms it (etcd names the primary itself).
            lease?.redirected(to: primary, epoch: view.epoch, by: node)
        }
    }

    public func replicaClient(_ client: ReplicaClient, following primary: String, epoch: Epoch) {
        guard epoch > self.epoch else { return }
        schedule { [self] in
            guard state.withLock({ $0.client }) === client, epoch > self.epoch else { return }
            if record(epoch: epoch, primary: primary) { state.withLock { $0.epoch = epoch } }
        }
    }

    public func replicaClient(_ client: ReplicaClient, handoff: ReplicationMessage.Handoff) {
        schedule { [self] in
            guard state.withLock({ $0.client }) === client else { return }
            lease?.handoffReceived(handoff)
        }
    }
}
