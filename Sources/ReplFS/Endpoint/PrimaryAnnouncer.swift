import Logging

/// Points clients at this node while, and only while, it is the primary and
/// its application answers: the virtual IP (`vip`) and the role hooks
/// (`hooks`).
///
/// The role controller calls in at each transition (``RoleAnnouncing``);
/// one thread of its own does the slow parts, so that a transition never
/// waits for an application's readiness or a hook:
/// - primary: once the application is ready (``Supervisor``'s readiness
///   probe), add the virtual IP and announce it (three times, 0.5 s apart,
///   as keepalived repeats its gratuitous ARPs), then run `on-primary`;
/// - leaving: the virtual IP goes before ``leavingPrimary()`` returns, so
///   the application is stopped only once clients are sent elsewhere;
/// - replica: `on-replica`, once per change of role (at start too).
///
/// Adding and removing the address are serialised, so an addition that
/// was under way when the node stepped down cannot land after the removal;
/// a removal that fails is tried again every second; a primary checks once
/// a second that it still holds the address and adds it again if not. The
/// address stays while the application restarts (no other node is primary
/// then: moving it would not help).
public final class PrimaryAnnouncer: RoleAnnouncing, Sendable {
    private let vip: VirtualIP?
    private let hooks: RoleHooks?
    private let node: String
    /// Whether the application (if any) runs and answers; and whether this
    /// node still accepts writes.
    private let isReady: @Sendable () -> Bool
    private let state = Monitor(State())
    /// Held while the address is added or removed.
    private let addressChange = Locked(())
    private let logger: Logger

    /// How often readiness is looked at while the primary waits for it.
    static let readinessPoll = Duration.milliseconds(20)
    /// Announcements after the first, and the gap before each.
    static let repeats = 2
    static let repeatGap = Duration.milliseconds(500)
    /// After a failed addition or removal, the next try.
    static let retryGap = Duration.seconds(1)
    /// How often a primary makes sure it still holds the address.
    static let verifyGap = Duration.seconds(1)

    public init(vip: VirtualIP?, hooks: RoleHooks?, node: String, isReady: @escaping @Sendable () -> Bool, logger: Logger) {
        self.vip = vip
        self.hooks = hooks
        self.node = node
        self.isReady = isReady
        self.logger = logger
    }

    /// Starts the announcing thread.
    public func start() {
        DetachedThread { [self] in run() }.start()
    }

    /// Ends the announcing thread (shutdown; ``leavingPrimary()`` first).
    public func close() {
        state.withLock { $0.closed = true }
    }

    // MARK: - RoleAnnouncing

    public func becamePrimary(epoch: Epoch) {
        state.withLock { $0.wanted = .primary(epoch) }
    }

    public func leavingPrimary() {
        state.withLock {
            $0.wanted = .nothing
            $0.announcements = 0
        }
        removeAddress()
    }

    public func becameReplica(epoch: Epoch, primary: String?) {
        state.withLock { $0.wanted = .replica(epoch, primary: primary) }
        removeAddress()
    }

    // MARK: - The announcing thread

    private enum Action {
        case add(Epoch)
        case announce
        /// Whether the address is still on the interface (someone may have
        /// taken it off: a network manager, a link that went down).
        case verify
        /// A removal that failed, again.
        case remove
        case hook(RoleHooks.Hook, Epoch, primary: String?)
    }

    private func run() {
        while let action = nextAction() {
            switch action {
            case .add(let epoch): addAddress(for: epoch)
            case .announce: announce()
            case .verify: verifyAddress()
            case .remove: removeAddress()
            case .hook(let hook, let epoch, let primary): hooks?.run(hook, epoch: epoch, primary: primary)
            }
        }
    }

    /// Waits until something is due; nil once closed.
    private func nextAction() -> Action? {
        let hasAddress = vip != nil
        return state.wait { state -> Monitor<State>.Step<Action?> in
            if state.closed { return .done(nil) }
            let now = ContinuousClock.now
            if state.wanted.isPrimary == false, let retry = state.removalRetryAt {
                guard now >= retry else { return .wait(until: retry) }
                state.removalRetryAt = nil
                return .done(.remove)
            }
            switch state.wanted {
            case .nothing:
                return .wait(until: nil)
            case .replica(let epoch, let primary):
                guard state.announced != .onReplica else { return .wait(until: nil) }
                state.announced = .onReplica
                return .done(.hook(.onReplica, epoch, primary: primary))
            case .primary(let epoch):
                guard isReady() else { return .wait(until: now + Self.readinessPoll) }
                if hasAddress, !state.addressHeld {
                    if let retry = state.retryAt, now < retry { return .wait(until: retry) }
                    return .done(.add(epoch))
                }
                if state.announced != .onPrimary {
                    state.announced = .onPrimary
                    return .done(.hook(.onPrimary, epoch, primary: node))
                }
                if state.announcements > 0, now >= state.nextAnnouncement {
                    state.announcements -= 1
                    state.nextAnnouncement = now + Self.repeatGap
                    return .done(.announce)
                }
                if hasAddress, now >= state.nextVerification {
                    state.nextVerification = now + Self.verifyGap
                    return .done(.verify)
                }
                let next = hasAddress ? state.nextVerification : nil
                return .wait(until: state.announcements > 0 ? min(state.nextAnnouncement, next ?? state.nextAnnouncement) : next)
            }
        }
    }

    private func addAddress(for epoch: Epoch) {
        guard let vip else { return }
        addressChange.withLock { _ in
            // Looked at again here: the lease may have gone (writes closed)
            // since this addition was chosen, and the removal waits for us.
            guard state.value.wanted == .primary(epoch), isReady() else { return }
            do {
                try vip.add()
            } catch {
                state.withLock { $0.retryAt = .now + Self.retryGap }
                logger.error("\(error); retrying in \(Supervisor.describe(Self.retryGap))")
                return
            }
            state.withLock {
                $0.addressHeld = true
                $0.retryAt = nil
                $0.announcements = Self.repeats
                $0.nextAnnouncement = .now + Self.repeatGap
                $0.nextVerification = .now + Self.verifyGap
            }
            logger.notice("virtual IP added", metadata: ["vip": "\(vip.address)", "interface": "\(vip.interface)", "epoch": "\(epoch)"])
            do { try vip.announce() } catch { logger.warning("\(error); announcing again in \(Supervisor.describe(Self.repeatGap))") }
        }
    }

    /// A primary that lost its address (taken off by someone else, or by
    /// its watchdog during a freeze it survived) adds it again.
    private func verifyAddress() {
        guard let vip else { return }
        addressChange.withLock { _ in
            guard case .primary = state.value.wanted, state.value.addressHeld, vip.isHeld == false else { return }
            state.withLock { $0.addressHeld = false }
            logger.warning("the virtual IP is no longer on the interface; adding it again", metadata: ["vip": "\(vip.address)", "interface": "\(vip.interface)"])
        }
    }

    private func announce() {
        guard let vip else { return }
        addressChange.withLock { _ in
            guard case .primary = state.value.wanted, state.value.addressHeld else { return }
            do { try vip.announce() } catch { logger.warning("\(error)") }
        }
    }

    private func removeAddress() {
        guard let vip else { return }
        addressChange.withLock { _ in
            let held = vip.isHeld
            do {
                try vip.remove()
                state.withLock {
                    $0.addressHeld = false
                    $0.removalRetryAt = nil
                }
                if held != false { logger.notice("virtual IP removed", metadata: ["vip": "\(vip.address)", "interface": "\(vip.interface)"]) }
            } catch {
                state.withLock { $0.removalRetryAt = .now + Self.retryGap }
                logger.critical("\(error): clients may still be sent to this node; retrying in \(Supervisor.describe(Self.retryGap))")
            }
        }
    }
}

extension PrimaryAnnouncer {
    fileprivate struct State: Sendable, Equatable {
        enum Wanted: Sendable, Equatable {
            case nothing
            case primary(Epoch)
            case replica(Epoch, primary: String?)

            var isPrimary: Bool {
                if case .primary = self { true } else { false }
            }
        }

        var wanted = Wanted.nothing
        /// The hook that ran last: what the hooks were told this node is.
        var announced: RoleHooks.Hook?
        var addressHeld = false
        var retryAt: ContinuousClock.Instant?
        /// Repeated announcements still due, and when the next one is.
        var announcements = 0
        var nextAnnouncement = ContinuousClock.now
        var nextVerification = ContinuousClock.now
        /// When to try again a removal that failed.
        var removalRetryAt: ContinuousClock.Instant?
        var closed = false
    }
}
