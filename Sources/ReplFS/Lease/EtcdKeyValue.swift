/// One key as etcd stores it, with the revisions that tell its history.
///
/// `createRevision` identifies one incarnation of the key: a key deleted and
/// created again gets a new one, which is why the lease keeper deletes its
/// key only `if createRevision` still matches (it never removes a successor's
/// key) and why it can serve as an epoch that only grows.
public struct EtcdKeyValue: Sendable, Equatable {
    /// The key (etcd keys are bytes; ReplFS only uses UTF-8 keys).
    public var key: String
    /// The value bytes, as written.
    public var value: [UInt8]
    /// The revision of the put that created this incarnation of the key.
    public var createRevision: Int64
    /// The revision of the last put to the key.
    public var modRevision: Int64
    /// How many puts this incarnation has had (1 after the create).
    public var version: Int64
    /// The lease the key is attached to, 0 when none: the key goes when it expires.
    public var lease: Int64

    /// Builds a key-value (the client builds them from replies; tests build expected ones).
    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}
