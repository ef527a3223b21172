/// What the daemon provides to the admin socket. ``AdminServer`` turns each
/// request into one call; every call may block for seconds (a promotion waits
/// for the lease and the catch-up) and runs on the server's own threads,
/// never on an event loop.
///
/// The admin layer knows nothing of the store or the lease: the daemon
/// implements this protocol and the socket, JSON and routing stay here.
public protocol AdminHandler: Sendable {
    /// This node's state now; must not fail (report problems in `lastError`).
    func status() -> AdminStatus
    /// Makes this node primary through a handoff without loss; `force` takes
    /// the lease even when the current primary does not answer.
    func promote(force: Bool) -> Result<AdminActionResult, AdminError>
    /// Hands the primary role to the most caught-up replica.
    func demote() -> Result<AdminActionResult, AdminError>
    /// Writes a consistent copy of `database` to the absolute `path`.
    func export(database: String, to path: String) -> Result<AdminActionResult, AdminError>
    /// Replaces `database` with the file at the absolute `path`, replicated (primary only).
    func importDatabase(_ database: String, from path: String) -> Result<AdminActionResult, AdminError>
    /// Writes the retained LTX chain of `database` into the absolute
    /// `directory`, one upstream-readable LTX file per log file.
    func exportLog(database: String, to directory: String) -> Result<AdminActionResult, AdminError>
}
