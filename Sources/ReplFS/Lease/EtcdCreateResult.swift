/// What `createIfAbsent` did: the one call that elects a primary.
public enum EtcdCreateResult: Sendable, Equatable {
    /// The key did not exist and now holds our value; `revision` is the key's
    /// create revision (the transaction's revision), usable as the epoch.
    case created(revision: Int64)
    /// The key exists: this is its current holder. Its `lease` may be the
    /// caller's own when an earlier attempt landed but its reply was lost
    /// (a timeout, then a retry on another endpoint); compare it.
    case exists(EtcdKeyValue)
}
