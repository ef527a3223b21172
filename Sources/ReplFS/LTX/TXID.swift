/// A transaction ID: the position of a committed SQLite transaction in the
/// replicated history.
///
/// TXIDs start at 1 and increase by one per transaction; a file whose
/// `minTXID` is 1 is a snapshot. Wrapping the raw `UInt64` in a type keeps
/// TXIDs from being confused with page numbers, offsets or checksums, which
/// all share integer types in the LTX format.
public struct TXID: CountingNumber, CustomStringConvertible {
    /// The on-disk value.
    public var rawValue: UInt64

    /// Wraps a raw value; every `UInt64` is representable, so this never fails.
    @inlinable
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Sixteen lowercase hex digits, the form used in LTX file names and by
    /// upstream tools, so logs can be matched against file listings.
    public var description: String { HexFormat.sixteenDigits(rawValue) }
}
