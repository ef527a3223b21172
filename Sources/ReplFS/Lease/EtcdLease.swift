#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// Automatic failover: the primary is whoever holds a key in etcd, attached
/// to a lease it keeps alive.
///
/// - Election: grant a lease (`lease.etcd.ttl`), then create the key only if
///   absent (`create_revision == 0`) with this node's name and address. The
///   key's create revision is the term's epoch: it only grows.
/// - The primary renews every TTL/3. Each renewal sent at time t lets it
///   write until t + TTL - margin on its own monotonic clock (the store's
///   ``WriteGate`` enforces it even if no thread of this process runs), so
///   it stops before etcd can expire the lease (invariant 5). A renewal that
///   finds the lease gone fences the node at once.
/// - Others watch the key: they follow its holder, and candidates campaign
///   when it disappears. A brand-new node (no term ever seen) waits 3 TTLs
///   before campaigning, so a node holding the data wins a fresh start.
/// - Before campaigning a candidate publishes its ``Standing`` (how far its
///   history goes) and holds back while a live candidate ranks above it;
///   just after its start it waits 2 TTLs for the others' standings, so a
///   cluster restarted whole is led by the node with the newest history.
/// - A handoff (`promote`/`demote`) goes through the lease: the old primary
///   stops writing and streams a marker, the target confirms it applied
///   everything, the old primary replaces the key by a notice naming the
///   target (one transaction, under its own lease, which it stops renewing),
///   and the target creates the key. The others hold back while the notice
///   names someone else, whatever their stream has reached.
public final class EtcdLease: LeaseKeeper, @unchecked Sendable {
    let host: any LeaseHost

    let client: EtcdClient

    let key: String

    let ttl: Duration

    private let margin: Duration

    let logger: Logger

    /// `replication.sync-replicas` > 0: this node publishes ``SynchronousMembers`` as primary.
    let synchronous: Bool

    /// `lease.max-lag` (zero: no limit).
    let maxLag: Duration

    private let running = Atomic(true)

    private let stopped = Semaphore()

    private let wake = Semaphore()

    let state = Locked(State())

    /// Lease renewal failures (a counter for metrics).
    public let renewFailures = Atomic<Int>(0)

    /// - Parameter tls: the client certificate of `lease.etcd.tls`, loaded and checked.
    public init(host: any LeaseHost, config: Config, tls: TLSIdentity? = nil, logger: Logger) throws(EtcdError) {
        self.host = host
        client = try EtcdClient(endpoints: config.lease.etcdEndpoints, requestTimeout: .milliseconds(500), tls: tls)
        key = config.lease.etcdKey
        ttl = config.lease.etcdTTL
        margin = min(.milliseconds(500), config.lease.etcdTTL / 4)
        synchronous = config.replication.syncReplicas > 0
        maxLag = config.lease.maxLag
        self.logger = logger
    }

    var me: String { host.identity.node }

    /// Where a handing-over primary names its successor (see ``released(to:)``).
    private var noticeKey: String { key + ".handoff" }

    public func start() {
        state.withLock { $0.gatherUntil = .now + ttl * 2 }
        if !host.storedState().epoch.isKnown {
            // Never part of a term: let nodes that hold data campaign first.
            state.withLock { $0.freshHoldBackUntil = .now + ttl * 3 }
        }
        DetachedThread { [self] in run() }.start()
    }

    public func stop() {
        running.store(false, ordering: .releasing)
        wake.post()
        stopped.wait()
        if let standing = state.withLock({ $0.standingLease }) { try? client.revoke(standing) }
        // Writes have stopped (the role controller shut down first): free the key
        // so another node takes over now rather than after the TTL.
        if let lease = state.withLock({ $0.lease }) {
            do {
                try client.revoke(lease)
                logger.notice("released the lease", metadata: ["key": "\(key)"])
            } catch {
                logger.warning("could not release the lease; it expires by itself", metadata: ["error": "\(error)"])
            }
        }
        client.shutdown()
    }

    private var isRunning: Bool { running.load(ordering: .acquiring) }

    private func sleep(_ duration: Duration) {
        _ = wake.wait(timeout: duration)
    }

    private func note(_ description: String, error: String? = nil) {
        state.withLock {
            $0.description = description
            if let error {
                $0.lastError = error
                $0.lastErrorAt = Date()
                $0.errorHolds = true
            }
        }
    }

    /// An exchange with etcd succeeded: what status shows is confirmed now.
    private func heardFromEtcd() {
        state.withLock {
            $0.lastContact = .now
            $0.errorHolds = false
        }
    }

    private func run() {
        while isRunning {
            switch host.role {
            case .primary, .handingOff:
                renew()
            case .replica, .fenced:
                observe()
            }
        }
        stopped.post()
    }

    /// Primary: one renewal, then wait a third of the TTL.
    private func renew() {
        guard let lease = state.withLock({ $0.lease }) else {
            // Primary without a lease (cannot happen with etcd): fence.
            host.report(.lost(reason: "no lease held"))
            return
        }
        let sent = MonotonicClock.nanoseconds()
        do {
            guard let granted = try client.keepAlive(lease) else {
                renewFailures.add(1, ordering: .relaxed)
                note("lost", error: "the lease expired at etcd")
                state.withLock { $0.lease = nil }
                host.report(.lost(reason: "the lease expired at etcd"))
                return
            }
            heardFromEtcd()
            let deadline = sent + UInt64((granted - margin).nanoseconds)
            state.withLock {
                $0.deadline = deadline
                $0.description = "primary"
            }
            host.report(.renewed(deadline: deadline))
            // The key must still be ours (nobody deleted it by hand).
            if let holder = try client.get(key), holder.lease == lease {
                publishProgress(lease: lease)
            } else {
                note("lost", error: "the key \(key) is no longer held by this node's lease")
                try? client.revoke(lease)
                state.withLock { $0.lease = nil }
                host.report(.lost(reason: "the key \(key) was taken away"))
                return
            }
        } catch {
            renewFailures.add(1, ordering: .relaxed)
            note("renewing", error: "cannot renew the lease: \(error)")
            logger.warning("cannot renew the lease", metadata: ["error": "\(error)"])
            if MonotonicClock.nanoseconds() >= state.withLock({ $0.deadline }) {
                host.report(.lost(reason: "could not renew the lease in time: \(error)"))
                state.withLock { $0.lease = nil }
                return
            }
            sleep(.milliseconds(100))
            return
        }
        sleep(ttl / 3)
    }

    /// Not primary: follow the key's holder, or campaign when it is free.
    private func observe() {
        let current: EtcdKeyValue?
        do {
            current = try client.get(key)
        } catch {
            note("etcd unreachable", error: "\(error)")
            sleep(.milliseconds(200))
            return
        }
        heardFromEtcd()
        if host.snapshot.upstream?.hasConnected == true {
            // Following a primary (or did, until it just went): this node
            // holds the data now, so the fresh-node hold-back is over. Not
            // only "connected now": a primary that dies within a second of
            // this node joining must not leave it holding back for 3 TTLs.
            state.withLock {
                $0.freshHoldBackUntil = nil
                $0.gatherUntil = nil
            }
        }
        let (takeover, holdBack) = state.withLock { ($0.takeover, $0.freshHoldBackUntil) }
        if let current {
            state.withLock { $0.freeSince = nil }
            observeHeld(current, takeover: takeover)
        } else {
            observeFree(takeover: takeover, holdBack: holdBack)
        }
    }

    /// Another node holds the key (or this one, left over): follow it.
    private func observeHeld(_ current: EtcdKeyValue, takeover: Bool) {
        guard let holder = try? JSONDecoder().decode(Holder.self, from: Data(current.value)) else {
            note("waiting", error: "the key \(key) holds something that is not a replfsd holder")
            sleep(.milliseconds(500))
            return
        }
        if holder.node == me {
            // Held by this node while it is not primary: left by a
            // previous run (this process holds the data directory lock,
            // so that run is over), or kept past a fence. Free it, then
            // campaign like everyone else.
            logger.notice("releasing a lease this node holds but does not act on", metadata: ["key": "\(key)"])
            try? client.revoke(current.lease)
            state.withLock { if $0.lease == current.lease { $0.lease = nil } }
            sleep(.milliseconds(20))
            return
        }
        let acted = state.withLock { $0.lastHolder.map { $0 == (holder.node, current.createRevision) } ?? false }
        if takeover, !acted {
            // Another node started a new term: the handoff to this node
            // did not happen, so stop waiting to take the key.
            state.withLock { $0.takeover = false }
            logger.warning("another node took the lease during a handoff to this node", metadata: ["holder": "\(holder.node)"])
        }
        keepStandingAlive()
        if !acted || host.role == .fenced {
            state.withLock { $0.lastHolder = (holder.node, current.createRevision) }
            note("following \(holder.node)")
            host.report(.following(Peer(name: holder.node, address: holder.address), epoch: Epoch(UInt64(current.createRevision))))
        }
        if takeover, acted, let since = state.withLock({ $0.takeoverSince }), ContinuousClock.now - since > ttl * 3 {
            // The old primary resumed (the handoff failed on its side): stop
            // waiting for the key, and campaign by the rules again.
            state.withLock { $0.takeover = false }
            logger.warning("the handoff to this node did not happen: the primary kept the lease", metadata: ["holder": "\(holder.node)"])
        } else if takeover, acted {
            // The old primary revokes its lease once we confirmed: poll.
            sleep(.milliseconds(10))
        } else {
            _ = try? client.watch(key, fromRevision: current.modRevision + 1, timeout: .seconds(1))
        }
    }

    /// The key is free: campaign, unless this node should hold back.
    private func observeFree(takeover: Bool, holdBack: ContinuousClock.Instant?) {
        guard host.identity.candidate else {
            note("waiting for a primary (not a candidate)")
            _ = try? client.watch(key, fromRevision: 0, timeout: .milliseconds(500))
            return
        }
        if let reason = host.cannotLead {
            note("not campaigning: \(reason)")
            _ = try? client.watch(key, fromRevision: 0, timeout: .milliseconds(500))
            return
        }
        let notice = (try? client.get(noticeKey)).flatMap { $0 }.flatMap { try? JSONDecoder().decode(Holder.self, from: Data($0.value)) }
        if let notice, notice.node != me {
            // Being handed to another node: it creates the key shortly, or
            // the notice ends with the old primary's lease.
            note("holding back: handing over to \(notice.node)")
            sleep(.milliseconds(10))
            return
        }
        if notice == nil, !takeover, let holdBack, ContinuousClock.now < holdBack {
            note("holding back")
            sleep(.milliseconds(50))
            return
        }
        if notice == nil, !takeover, let reason = holdBackForNewerHistory() {
            note(reason)
            sleep(.milliseconds(50))
            return
        }
        campaign()
    }

    /// Tries to take the key; becomes primary if it does.
    private func campaign() {
        note("campaigning")
        let started = MonotonicClock.nanoseconds()
        do {
            let grant = try client.grant(ttl: ttl)
            switch try client.createIfAbsent(key, value: holderValue(), lease: grant.id) {
            case .created(let revision):
                try takeOffice(lease: grant.id, revision: revision, granted: grant.ttl, since: started)
            case .exists(let holder) where holder.lease == grant.id:
                // Our own create landed on a retry.
                try takeOffice(lease: grant.id, revision: holder.createRevision, granted: grant.ttl, since: started)
            case .exists:
                try? client.revoke(grant.id)
            }
        } catch {
            note("campaigning", error: "campaign failed: \(error)")
            sleep(.milliseconds(200))
        }
    }

    private func takeOffice(lease: Int64, revision: Int64, granted: Duration, since started: UInt64) throws(EtcdError) {
        let deadline = started + UInt64((granted - margin).nanoseconds)
        state.withLock {
            $0.lease = lease
            $0.epoch = Epoch(UInt64(revision))
            $0.deadline = deadline
            $0.takeover = false
            $0.freshHoldBackUntil = nil
            $0.gatherUntil = nil
            $0.lastHolder = (me, revision)
            $0.description = "primary"
            $0.synchronousMembers = nil
            $0.handedOverEpoch = nil
            $0.progress = []
            $0.lastRenewalSample = nil
        }
        logger.notice("won the lease", metadata: ["key": "\(key)", "epoch": "\(revision)"])
        // A primary's standing would hold the next election back for nothing.
        if let standing = state.withLock({ state in
            defer {
                state.standingLease = nil
                state.lastPublished = nil
            }
            return state.standingLease
        }) {
            try? client.revoke(standing)
        }
        if !synchronous { withdrawSynchronousPromise(epoch: Epoch(UInt64(revision))) }
        host.report(.elected(epoch: Epoch(UInt64(revision)), deadline: deadline, keepLease: { [self] in renewWhileTakingOffice(lease) }))
        if host.role != .primary {
            // Could not act on it (for example the state could not be saved).
            try client.revoke(lease)
            state.withLock { $0.lease = nil }
        }
    }

    /// A renewal while the node takes office (its last apply may wait for
    /// readers): at most every TTL/3, as ``renew()`` does. The deadline the
    /// lease allows now, or nil once it is gone (expired at etcd, or not
    /// renewed in time).
    private func renewWhileTakingOffice(_ lease: Int64) -> UInt64? {
        let current = state.withLock { $0.deadline }
        let now = MonotonicClock.nanoseconds()
        let dueAt = current - min(current, UInt64((ttl - margin - ttl / 3).nanoseconds))
        if now < dueAt { return current }
        do {
            guard let granted = try client.keepAlive(lease) else {
                renewFailures.add(1, ordering: .relaxed)
                note("lost", error: "the lease expired at etcd while this node waited to take office")
                return nil
            }
            heardFromEtcd()
            let deadline = now + UInt64((granted - margin).nanoseconds)
            state.withLock { $0.deadline = deadline }
            return deadline
        } catch {
            renewFailures.add(1, ordering: .relaxed)
            logger.warning("cannot renew the lease", metadata: ["error": "\(error)"])
            return MonotonicClock.nanoseconds() < current ? current : nil
        }
    }

    private func holderValue() -> [UInt8] {
        let holder = Holder(node: me, address: host.identity.address)
        return (try? Array(JSONEncoder().encode(holder))) ?? []
    }

    public func handoffEpoch(after epoch: Epoch) -> Epoch { .unknown }

    public func released(to target: Peer) {
        guard let lease = state.withLock({ $0.lease }) else { return }
        // Replace the key by a notice naming the target, under this node's
        // lease, which is no longer renewed: others hold back until the
        // target creates the key, or the lease ends. (The handoff marker in
        // the stream may reach them after the key is gone, so it cannot be
        // what holds them back.)
        let notice = (try? Array(JSONEncoder().encode(Holder(node: target.name, address: target.address)))) ?? []
        let handedOver = (try? client.handOver(key, lease: lease, noticeKey: noticeKey, notice: notice)) ?? false
        if !handedOver {
            logger.warning("could not hand the key over in etcd; revoking the lease, so any candidate may take the key")
            do {
                try client.revoke(lease)
            } catch {
                logger.warning("could not revoke the lease for the handoff; it expires by itself", metadata: ["error": "\(error)"])
            }
        }
        state.withLock {
            $0.lease = nil
            // The target applied everything before it accepted: commits
            // still waiting may count its confirmations (not after a loss).
            $0.handedOverEpoch = $0.epoch
        }
    }

    public func resumeAfterFailedHandoff(offered: Epoch) -> Epoch? {
        let (lease, epoch, deadline) = state.withLock { ($0.lease, $0.epoch, $0.deadline) }
        guard lease != nil, MonotonicClock.nanoseconds() < deadline else { return nil }
        return epoch
    }

    public func handoffReceived(_ handoff: ReplicationMessage.Handoff) {
        if handoff.node == me {
            state.withLock {
                $0.takeover = true
                $0.takeoverSince = .now
            }
            note("taking over")
            wake.post()
        } else {
            host.report(.following(Peer(name: handoff.node, address: handoff.address), epoch: host.epoch))
        }
    }

    public func redirected(to primary: Peer, epoch: Epoch, by node: String) {
        // The key names the primary; a peer's word is not needed.
    }

    public func forcePromotion() -> Result<Epoch, RoleError> {
        if let current = try? client.get(key), let holder = try? JSONDecoder().decode(Holder.self, from: Data(current.value)), holder.node != me {
            return .failure(RoleError(
                .conflict,
                "\(holder.node) holds the lease (key \(key), epoch \(current.createRevision)); with etcd, --force cannot take a live lease: it ends by itself within \(ttl) if \(holder.node) is down"
            ))
        }
        state.withLock {
            $0.takeover = true
            $0.takeoverSince = .now
            $0.freshHoldBackUntil = nil
        }
        wake.post()
        let deadline = ContinuousClock.now + ttl * 3
        while ContinuousClock.now < deadline {
            if host.role == .primary { return .success(host.epoch) }
            Thread.sleep(forTimeInterval: 0.01)
        }
        state.withLock { $0.takeover = false }
        return .failure(RoleError(.failed, "could not take the lease within \(ttl * 3)"))
    }

    public var currentDeadline: UInt64? { state.withLock { $0.lease == nil ? nil : $0.deadline } }

    public var status: LeaseStatus {
        let snapshot = state.withLock { $0 }
        var expires: Duration?
        if snapshot.lease != nil {
            let now = MonotonicClock.nanoseconds()
            expires = .nanoseconds(Int64(snapshot.deadline > now ? snapshot.deadline - now : 0))
        }
        return LeaseStatus(
            type: "etcd", candidate: host.identity.candidate, state: snapshot.description, key: key, expiresIn: expires,
            lastError: snapshot.lastError, lastErrorAt: snapshot.lastErrorAt, lastErrorHolds: snapshot.errorHolds,
            lastContactAgo: snapshot.lastContact.map { ContinuousClock.now - $0 }, renewFailures: renewFailures.load(ordering: .relaxed))
    }
}
