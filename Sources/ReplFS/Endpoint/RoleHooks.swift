import Dispatch
import Logging

/// `hooks.on-primary` and `hooks.on-replica`: commands run after this node's
/// role changed, for what replfsd does not do itself (a DNS API, a cloud
/// floating IP, a page to the operator).
///
/// Hooks run one at a time, in the order the changes happened, on a queue of
/// their own: a slow or hanging hook never holds up a role change (it is
/// killed after `hooks.timeout`). Each gets `REPLFS_ROLE`, `REPLFS_EPOCH`,
/// `REPLFS_PRIMARY` (the primary's name; empty when not known) and
/// `REPLFS_NODE`; what it prints goes to the log, and a failure is logged
/// and counted (`replfs_hook_failures_total`), nothing more.
public final class RoleHooks: Sendable {
    public enum Hook: String, Sendable, CaseIterable {
        case onPrimary = "on-primary"
        case onReplica = "on-replica"
    }

    private let commands: [Hook: [String]]
    private let timeout: Duration
    private let node: String
    private let queue = DispatchQueue(label: "replfs.hooks")
    private let finished: @Sendable (Hook, ShortCommand.Outcome) -> Void
    private let logger: Logger

    /// - Parameter finished: told how each run ended (metrics, tests).
    public init(
        onPrimary: [String]?, onReplica: [String]?, timeout: Duration, node: String, logger: Logger,
        finished: @escaping @Sendable (Hook, ShortCommand.Outcome) -> Void = { _, _ in }
    ) {
        var commands: [Hook: [String]] = [:]
        if let onPrimary, !onPrimary.isEmpty { commands[.onPrimary] = onPrimary }
        if let onReplica, !onReplica.isEmpty { commands[.onReplica] = onReplica }
        self.commands = commands
        self.timeout = timeout
        self.node = node
        self.finished = finished
        self.logger = logger
    }

    /// Queues `hook` (if configured) with this role's environment; returns at once.
    public func run(_ hook: Hook, epoch: Epoch, primary: String?) {
        guard let command = commands[hook] else { return }
        let environment = [
            "REPLFS_ROLE": hook == .onPrimary ? "primary" : "replica", "REPLFS_EPOCH": "\(epoch.rawValue)", "REPLFS_PRIMARY": primary ?? "",
            "REPLFS_NODE": node,
        ]
        let (timeout, logger, finished) = (self.timeout, self.logger, self.finished)
        queue.async {
            let started = ContinuousClock.now
            let outcome = ShortCommand(command, environment: environment, timeout: timeout).run()
            var metadata: Logger.Metadata = ["hook": "\(hook.rawValue)", "epoch": "\(epoch)", "took-ms": "\((ContinuousClock.now - started).milliseconds)"]
            if !outcome.output.isEmpty { metadata["output"] = "\(outcome.output)" }
            if outcome.succeeded {
                logger.notice("hook ran", metadata: metadata)
            } else {
                logger.error("hook failed: \(outcome.summary)", metadata: metadata)
            }
            finished(hook, outcome)
        }
    }

    /// Waits until every queued hook has run (shutdown, tests).
    public func drain() {
        queue.sync {}
    }
}
