/// A primary term: every transaction is committed in one, and a node writes
/// only in the epoch of the lease it holds (design.md, invariant 5).
///
/// Static leases count epochs in `DATA/node.json`; etcd's is the lease
/// key's `create_revision`. Either way a later term has a higher epoch, so
/// replicas refuse streams from older ones. Epoch 0 is "not known": a
/// transaction recorded before epochs were (see ``EpochHistory``), or a
/// node that has never seen a primary. A type of its own keeps an epoch
/// from being passed where a TXID, a revision or a node ID belongs: all
/// four are `UInt64` on the wire.
public struct Epoch: CountingNumber, CustomStringConvertible, Codable, ExpressibleByIntegerLiteral {
    /// The value on the wire and on disk.
    public var rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// A literal epoch (tests, and the first static epoch): a literal cannot
    /// be a TXID or a revision by mistake.
    @inlinable
    public init(integerLiteral value: UInt64) {
        self.rawValue = value
    }

    /// No epoch known.
    public static let unknown = Epoch(0)

    /// Whether an epoch is known (not 0).
    @inlinable
    public var isKnown: Bool { rawValue != 0 }

    /// Decimal, as status, logs and etcd revisions show it.
    public var description: String { String(rawValue) }

    /// A plain number in JSON (status, node.json), as before the type existed.
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(UInt64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
