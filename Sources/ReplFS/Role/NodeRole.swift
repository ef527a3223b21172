/// The role a node has now.
public enum NodeRole: String, Sendable, Codable {
    /// Writes, streams to replicas, runs the application.
    case primary
    /// Read-only, follows the primary.
    case replica
    /// Read-only, lost its lease (or never had a primary to follow): waits
    /// for the lease to name one.
    case fenced
    /// Was primary, has stopped writing, waits for the new primary to
    /// confirm it holds everything.
    case handingOff = "handing-off"
}
