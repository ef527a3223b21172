#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOPosix
import Synchronization

/// The embedded lease: the configuration names the first primary, and the
/// role moves only by hand (`replfsd promote` / `demote`).
///
/// The epoch is a counter persisted in every node's state; a handoff
/// offers the next one. Peers are asked (``ReplicationProbe``,
/// authenticated) what they know, so that:
/// - a restarted node resumes as primary only if no peer knows of a later
///   epoch (an old primary that comes back follows the new one);
/// - a replica that lost its primary finds the one promoted meanwhile;
/// - two nodes that both believe they are primary (a forced promotion while
///   the old primary was cut off) resolve toward the higher epoch, and the
///   other one keeps its diverged transactions aside when it follows.
public final class StaticLease: LeaseKeeper, @unchecked Sendable {
    private let host: any LeaseHost
    private let configuredPrimary: String
    /// Every other node, by name.
    private let peers: [String: String]
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let probe: ReplicationProbe
    private let logger: Logger
    private let running = Atomic(true)
    private let stopped = Semaphore()
    private let lastError = Locked<String?>(nil)

    public init(host: any LeaseHost, configuredPrimary: String, peers: [String: String], logger: Logger) {
        self.host = host
        self.configuredPrimary = configuredPrimary
        self.peers = peers.filter { $0.key != host.identity.node }
        self.logger = logger
        probe = ReplicationProbe(identity: host.identity, group: group)
    }

    /// Decides the first role (asking the peers), then keeps checking on
    /// a thread of its own.
    public func start() {
        decideAtStartup()
        DetachedThread { [self] in run() }.start()
    }

    public func stop() {
        running.store(false, ordering: .releasing)
        stopped.wait()
        try? group.syncShutdownGracefully()
    }

    private var me: String { host.identity.node }

    private func peer(_ name: String) -> Peer? {
        if name == me { return Peer(name: host.identity.node, address: host.identity.address) }
        return peers[name].map { Peer(name: name, address: $0) }
    }

    // MARK: - Asking the peers

    private struct Answer {
        var node: String
        var view: ReplicationView
    }

    /// Every reachable peer's answer, asked in parallel.
    private func askPeers() -> [Answer] {
        let answers = Locked<[Answer]>([])
        let group = DispatchGroup()
        for address in peers.values {
            group.enter()
            DispatchQueue.global().async { [probe] in
                if let (node, view) = probe.probe(address) { answers.withLock { $0.append(Answer(node: node, view: view)) } }
                group.leave()
            }
        }
        group.wait()
        return answers.value
    }

    /// The peer that claims the primary role at the highest epoch.
    private func claimedPrimary(_ answers: [Answer]) -> Answer? {
        answers.filter(\.view.isPrimary).max { ($0.view.epoch, $0.node) < ($1.view.epoch, $1.node) }
    }

    // MARK: - Deciding

    private func run() {
        var lastCheck = ContinuousClock.now
        while running.load(ordering: .acquiring) {
            usleep(200_000)
            guard ContinuousClock.now - lastCheck >= .seconds(1) else { continue }
            lastCheck = .now
            check()
        }
        stopped.post()
    }

    /// The first role: the persisted state, unless a peer knows better.
    private func decideAtStartup() {
        let stored = host.storedState()
        let answers = askPeers()
        let highestSeen = max(stored.epoch, answers.map(\.view.epoch).max() ?? .unknown)
        if let claimed = claimedPrimary(answers), claimed.view.epoch >= stored.epoch, let primary = peer(claimed.node) {
            // The address this node reached it at (its own peers entry).
            return host.report(.following(primary, epoch: claimed.view.epoch))
        }
        let holder = !stored.epoch.isKnown ? configuredPrimary : (stored.primary ?? configuredPrimary)
        if holder == me {
            guard highestSeen <= stored.epoch else {
                // A peer saw a later term than this node's: another node
                // was made primary while this one was away.
                let named = answers.max { $0.view.epoch < $1.view.epoch }?.view.primary
                if let named, named.name != me {
                    host.report(.following(named, epoch: highestSeen))
                } else {
                    note("a peer knows epoch \(highestSeen), newer than this node's \(stored.epoch); waiting for its primary")
                }
                return
            }
            host.report(.elected(epoch: max(stored.epoch, Epoch(1))))
        } else if let primary = peer(holder) {
            host.report(.following(primary, epoch: stored.epoch))
        } else {
            note("the primary \(holder) is not in lease.static.peers")
        }
    }

    /// Once a second: a primary makes sure no peer holds a later term; a
    /// replica cut off from its primary looks for the current one.
    private func check() {
        let snapshot = host.snapshot
        switch snapshot.role {
        case .primary:
            let answers = askPeers()
            if let claimed = claimedPrimary(answers), claimed.view.epoch > snapshot.epoch, let primary = peer(claimed.node) {
                logger.warning(
                    "another node is primary at a later epoch: stepping down",
                    metadata: ["primary": "\(claimed.node)", "epoch": "\(claimed.view.epoch)", "own epoch": "\(snapshot.epoch)"])
                host.report(.following(primary, epoch: claimed.view.epoch))
            }
        case .replica, .fenced:
            if let since = snapshot.upstream?.disconnectedSince, ContinuousClock.now - since < .seconds(3) { return }
            let answers = askPeers()
            if let claimed = claimedPrimary(answers), claimed.view.epoch >= snapshot.epoch, claimed.node != snapshot.primary?.name,
                let primary = peer(claimed.node)
            {
                host.report(.following(primary, epoch: claimed.view.epoch))
            }
        case .handingOff:
            break
        }
    }

    private func note(_ message: String) {
        logger.error("\(message)")
        lastError.withLock { $0 = message }
        host.report(.failed(message))
    }

    // MARK: - LeaseKeeper

    public func handoffEpoch(after epoch: Epoch) -> Epoch { epoch.next }

    public func released(to target: Peer) {}

    public func resumeAfterFailedHandoff(offered: Epoch) -> Epoch? { offered.next }

    public func handoffReceived(_ handoff: ReplicationMessage.Handoff) {
        if handoff.node == me {
            host.report(.elected(epoch: handoff.epoch))
        } else {
            // This node's own peers entry wins over the address the old primary relayed.
            host.report(.following(peer(handoff.node) ?? Peer(name: handoff.node, address: handoff.address), epoch: handoff.epoch))
        }
    }

    public func redirected(to primary: Peer, epoch: Epoch, by node: String) {
        guard epoch >= host.epoch else { return }
        host.report(.following(peer(primary.name) ?? primary, epoch: epoch))
    }

    public func forcePromotion() -> Result<Epoch, RoleError> {
        let answers = askPeers()
        if let claimed = claimedPrimary(answers) {
            return .failure(RoleError(
                .conflict, "\(claimed.node) is the primary (epoch \(claimed.view.epoch)) and reachable: run promote without --force"))
        }
        let highest = max(host.storedState().epoch, answers.map(\.view.epoch).max() ?? .unknown, host.epoch)
        host.report(.elected(epoch: highest.next))
        return host.role == .primary && host.epoch == highest.next ? .success(highest.next) : .failure(RoleError(.failed, "could not become primary"))
    }

    public var currentDeadline: UInt64? { nil }

    public var status: LeaseStatus {
        let snapshot = host.snapshot
        let state: String
        switch snapshot.role {
        case .primary: state = "primary"
        case .replica: state = "following \(snapshot.primary?.name ?? "?")"
        case .fenced: state = "waiting for a primary"
        case .handingOff: state = "handing off"
        }
        return LeaseStatus(
            type: "static", candidate: host.identity.candidate, state: state, key: nil, expiresIn: nil, lastError: lastError.value)
    }
}
