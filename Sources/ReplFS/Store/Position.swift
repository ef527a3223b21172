/// Where a database stands in its history: the last transaction applied and
/// the checksum of the content it left.
///
/// Two nodes at the same position hold the same bytes, because the checksum
/// is the LTX rolling checksum of the whole database (invariant 1). The text
/// form `TXID/CHECKSUM` (16 hex digits each) matches upstream `ltx`.
public struct Position: Hashable, Sendable, CustomStringConvertible {
    public var txid: TXID
    public var checksum: Checksum

    public init(txid: TXID, checksum: Checksum) {
        self.txid = txid
        self.checksum = checksum
    }

    /// A database with no history yet.
    public static let empty = Position(txid: TXID(0), checksum: .emptyDatabase)

    public var description: String { "\(txid)/\(checksum)" }

    /// Parses `TXID/CHECKSUM`.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, parts[0].count == 16, parts[1].count == 16,
            let txid = UInt64(parts[0], radix: 16), let checksum = UInt64(parts[1], radix: 16)
        else { return nil }
        self.init(txid: TXID(txid), checksum: Checksum(checksum))
    }
}
