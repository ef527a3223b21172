/// The application this node runs only while it is the primary
/// (`exec.command`, see ``Supervisor``).
public protocol SupervisedApplication: Sendable {
    /// Wants it running (starts it, restarts it if it dies).
    func start()
    /// Stops it and returns once it has exited: gracefully (SIGTERM, then
    /// SIGKILL after the stop timeout), or `immediately` (SIGKILL: the node
    /// lost its lease and another may already run the application).
    func stop(immediately: Bool)
}

extension SupervisedApplication {
    /// Stops it gracefully and returns once it has exited.
    func stop() { stop(immediately: false) }
}

extension Supervisor: SupervisedApplication {}
