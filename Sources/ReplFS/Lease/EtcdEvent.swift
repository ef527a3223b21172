/// A change to a watched key.
public enum EtcdEvent: Sendable, Equatable {
    /// The key was created or overwritten; this is its new state.
    case put(EtcdKeyValue)
    /// The key was deleted (by a delete or because its lease expired) at
    /// `modRevision`: for a replica, the primary is gone.
    case delete(key: String, modRevision: Int64)
}
