/// A `UInt64` with a meaning of its own (a TXID, an epoch), wrapped in a
/// type so that it cannot be passed where another number of the same width
/// belongs: on the wire and in files they are all `UInt64`.
///
/// The shared parts live here once: construction from the raw value, the
/// numeric order, and the number after.
public protocol CountingNumber: RawRepresentable, Hashable, Comparable, Sendable where RawValue == UInt64 {
    init(rawValue: UInt64)
}

extension CountingNumber {
    /// Shorthand for `init(rawValue:)`, for call sites that spell out values.
    @inlinable
    public init(_ rawValue: UInt64) {
        self.init(rawValue: rawValue)
    }

    /// The one after this one. Traps on overflow, which 2^64 will not reach.
    @inlinable
    public var next: Self { Self(rawValue: rawValue + 1) }

    /// Numeric order: for TXIDs the order records are applied in, for
    /// epochs the order of primary terms.
    @inlinable
    public static func < (lhs: Self, rhs: Self) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}
