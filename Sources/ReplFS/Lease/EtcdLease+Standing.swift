import Foundation

/// Who may campaign when the key is free: candidates publish their
/// ``EtcdLease/Standing`` and compare (the most caught-up takes the key),
/// and with synchronous replication a candidate must prove that it holds
/// every commit the last primary acknowledged (its ``SynchronousMembers``).
extension EtcdLease: SynchronousMembership {
    var positionsPrefix: String { key + ".positions/" }
    /// Where a synchronous primary publishes its ``SynchronousMembers``.
    var synchronousKey: String { key + ".sync" }
    /// Where the primary publishes its ``Progress``.
    var progressKey: String { key + ".progress" }

    /// Primary, at each renewal: a new sample if its history moved, kept
    /// for a minute, published while this node still holds the key.
    func publishProgress(lease: Int64) {
        let sample = Progress.Sample(transactions: standing(after: nil).transactions, at: Int64(MonotonicClock.nanoseconds() / 1_000_000))
        let progress: Progress? = state.withLock { state in
            defer { state.lastRenewalSample = sample }
            guard let samples = Progress.record(sample, after: state.progress, lastRenewal: state.lastRenewalSample) else { return nil }
            state.progress = samples
            return Progress(node: me, epoch: state.epoch, samples: samples)
        }
        guard let progress, let value = try? JSONEncoder().encode(progress) else { return }
        _ = try? client.putWhileHeld(progressKey, value: [UInt8](value), holderKey: key, lease: lease)
    }

    /// `lease.max-lag`, without synchronous replication: why this node,
    /// further behind the last primary than that, does not take over by
    /// itself, or nil.
    private func maxLagHoldBack(_ mine: Standing) -> String? {
        guard maxLag > .zero, let value = try? client.get(progressKey),
            let progress = try? JSONDecoder().decode(Progress.self, from: Data(value.value))
        else { return nil }
        let behind: String
        switch progress.lag(of: mine.transactions) {
        case .caughtUp: return nil
        case .behind(let lag):
            guard lag > maxLag else { return nil }
            behind = "\(lag)"
        case .beyondRecord:
            behind = "more than the last minute"
        }
        return "holding back: this node is \(behind) behind \(progress.node)'s last commits (lease.max-lag \(maxLag)); replfsd promote --force takes over anyway"
    }

    /// The term this node saw end: the last holder's create revision, or
    /// the newest epoch it holds history from (just started).
    private var endedTerm: Int64 {
        let seen = state.withLock { $0.lastHolder?.1 } ?? 0
        let held = Int64(clamping: host.positions().map(\.position.epoch.rawValue).max() ?? 0)
        return max(seen, held)
    }

    func standing(after term: Int64?) -> Standing {
        let positions = host.positions()
        return Standing(
            node: me, epoch: positions.map(\.position.epoch).max() ?? .unknown, transactions: positions.reduce(0) { $0 &+ $1.position.txid.rawValue },
            after: term, databases: Dictionary(positions.map { ($0.database, $0.position.txid.rawValue) }, uniquingKeysWith: max))
    }

    /// While following, a candidate keeps a standing published (renewed
    /// every half TTL, its position as of then): when the key goes, the
    /// others know it is alive and wait for its fresh standing.
    func keepStandingAlive() {
        guard host.identity.candidate, host.cannotLead == nil else { return }
        if let last = state.withLock({ $0.lastPublished }), last.standing.after == nil, ContinuousClock.now - last.at < ttl / 2 { return }
        try? publish(standing(after: nil))
    }

    /// Writes `standing` under a lease of this node's (2 TTLs), granted once
    /// and renewed at each publication, revoked once it is primary or stops.
    func publish(_ standing: Standing) throws(EtcdError) {
        let last = state.withLock { $0.lastPublished }
        if let last, last.standing == standing, ContinuousClock.now - last.at < ttl / 2 { return }
        var lease = state.withLock { $0.standingLease }
        if let current = lease, try client.keepAlive(current) == nil { lease = nil }
        if lease == nil {
            lease = try client.grant(ttl: ttl * 2).id
            state.withLock { $0.standingLease = lease }
        }
        let value = (try? JSONEncoder().encode(standing)).map { [UInt8]($0) } ?? []
        try client.put(positionsPrefix + me, value: value, lease: lease!)
        state.withLock { $0.lastPublished = (standing, .now) }
    }

    /// Publishes this node's standing for the term that ended and says why
    /// not to campaign yet, if it should not:
    ///
    /// - The last primary was synchronous (its ``SynchronousMembers`` in
    ///   etcd, not degraded): only a member (or that primary itself) may
    ///   campaign, once it has the fresh standings of enough members that
    ///   any N of them include one (its own counts) and none of those is
    ///   ahead of it. Not bounded in time: a candidate that cannot prove it
    ///   holds every acknowledged commit does not take over by itself.
    /// - Otherwise, the most caught-up live candidate takes the key: wait
    ///   (up to one TTL) for every live candidate's fresh standing, and
    ///   hold back (up to 3 TTLs) while one ranks above this node. Near the
    ///   start, first wait for the others to publish theirs.
    func holdBackForNewerHistory() -> String? {
        let now = ContinuousClock.now
        let freeSince = state.withLock { state in
            if state.freeSince == nil { state.freeSince = now }
            return state.freeSince!
        }
        do {
            let published = try client.list(prefix: positionsPrefix).compactMap { try? JSONDecoder().decode(Standing.self, from: Data($0.value)) }
            let term = max(endedTerm, published.compactMap(\.after).max() ?? 0)
            let mine = standing(after: term)
            try publish(mine)
            let others = published.filter { $0.node != me }
            if let promise = try client.get(synchronousKey).flatMap({ try? JSONDecoder().decode(SynchronousMembers.self, from: Data($0.value)) }),
                !promise.degraded
            {
                return synchronousHoldBack(promise, mine: mine, fresh: others.filter { $0.after == term })
            }
            if let reason = maxLagHoldBack(mine) { return reason }
            guard now - freeSince < ttl * 3 else { return nil }
            if let until = state.withLock({ $0.gatherUntil }), now < until {
                return "holding back: comparing positions with the other candidates (just started)"
            }
            if let better = others.filter({ $0.ranks(above: mine) }).max(by: { $1.ranks(above: $0) }) {
                return "holding back: \(better.node) holds newer transactions (epoch \(better.epoch), \(better.transactions) against \(mine.epoch), \(mine.transactions))"
            }
            let stale = others.filter { $0.after != term }.map(\.node)
            if !stale.isEmpty, now - freeSince < ttl {
                return "holding back: waiting for the positions of \(stale.sorted().joined(separator: ", ")) (live candidates)"
            }
        } catch {
            // etcd is needed to campaign anyway; the campaign reports it.
            return nil
        }
        return nil
    }

    /// The synchronous rule (see ``SynchronousMembers``): why this node may
    /// not take over yet, or nil.
    private func synchronousHoldBack(_ promise: SynchronousMembers, mine: Standing, fresh: [Standing]) -> String? {
        // The primary that made the promise holds what it acknowledged (if
        // its history reaches that term: not a node rebuilt empty).
        if promise.primary == me, mine.epoch >= promise.epoch { return nil }
        guard promise.members.contains(me) else {
            return "holding back: not one of the synchronous replicas of \(promise.primary) (\(promise.members.joined(separator: ", "))), so this node may lack commits it acknowledged"
        }
        let compared = fresh.filter { promise.members.contains($0.node) }
        guard compared.count + 1 >= promise.quorum else {
            let missing = Set(promise.members).subtracting(compared.map(\.node)).subtracting([me]).sorted()
            return "holding back: cannot prove this node holds every commit \(promise.primary) acknowledged until \(promise.quorum - 1 - compared.count) more of \(missing.joined(separator: ", ")) publish their positions (sync-replicas \(promise.replicas) of \(promise.members.count))"
        }
        // Every compared member must hold no transaction this node lacks,
        // database by database (members hold prefixes of one history, so
        // one of them does; a member caught up on one database and not yet
        // on another, mid-reconnection, does not prove anything).
        if let ahead = compared.first(where: { $0.isAhead(ofAny: mine) }) {
            return "holding back: \(ahead.node) holds transactions this node lacks (epoch \(ahead.epoch), \(ahead.transactions) against \(mine.epoch), \(mine.transactions))"
        }
        if let better = compared.filter({ $0.ranks(above: mine) }).max(by: { $1.ranks(above: $0) }) {
            return "holding back: \(better.node) ranks first with the same transactions"
        }
        return nil
    }

    // MARK: - SynchronousMembership (the primary's side)

    /// An asynchronous primary promises nothing: a synchronous
    /// predecessor's promise (kept, it holds every commit acknowledged
    /// under it) is replaced by a degraded one, so that its successors
    /// compare positions as without synchronous replication.
    func withdrawSynchronousPromise(epoch: Epoch) {
        guard let current = try? client.get(synchronousKey),
            let promise = try? JSONDecoder().decode(SynchronousMembers.self, from: Data(current.value)), !promise.degraded
        else { return }
        _ = publish(SynchronousMembers(epoch: epoch, primary: me, replicas: promise.replicas, members: [], degraded: true))
    }

    public var term: (node: String, epoch: Epoch)? {
        state.withLock { $0.lease == nil ? nil : (me, $0.epoch) }
    }

    public func publishedMembers() -> SynchronousMembers? {
        state.withLock { state in
            guard state.lease != nil || state.handedOverEpoch == state.epoch, let members = state.synchronousMembers, members.epoch == state.epoch
            else { return nil }
            return members
        }
    }

    public func publish(_ members: SynchronousMembers) -> Bool {
        guard let lease = state.withLock({ $0.lease != nil && $0.epoch == members.epoch ? $0.lease : nil }),
            let value = try? JSONEncoder().encode(members)
        else { return false }
        do {
            guard try client.putWhileHeld(synchronousKey, value: [UInt8](value), holderKey: key, lease: lease) else { return false }
        } catch {
            // The write may have landed: until one is confirmed, count only
            // the members both sets have, and go on unconfirmed only if
            // both say so. Valid whichever etcd holds.
            logger.warning("cannot publish the synchronous replicas", metadata: ["error": "\(error)"])
            state.withLock { state in
                guard state.lease == lease else { return }
                let old = state.synchronousMembers
                state.synchronousMembers = SynchronousMembers(
                    epoch: members.epoch, primary: members.primary, replicas: members.replicas,
                    members: Set(members.members).intersection(old?.members ?? []), degraded: members.degraded && (old?.degraded ?? false))
            }
            return false
        }
        state.withLock { if $0.lease == lease { $0.synchronousMembers = members } }
        return true
    }
}
