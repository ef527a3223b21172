/// Where a database stands in its history: the last transaction applied,
/// the checksum of the content it left, and the epoch in which that
/// transaction was committed.
///
/// The checksum is the LTX rolling checksum of the whole database, so it
/// follows the content; but it is linear, and two histories can reach one
/// checksum. The epoch tells them apart: the same TXID committed in two
/// epochs is two histories (design.md, invariant 1; see ``EpochHistory``).
/// Epoch 0 means not known (a log from before epochs were recorded): then
/// only the checksum is compared. The text form `TXID/CHECKSUM` (16 hex
/// digits each) matches upstream `ltx`.
public struct Position: Hashable, Sendable, CustomStringConvertible {
    public var txid: TXID
    public var checksum: Checksum
    public var epoch: Epoch

    public init(txid: TXID, checksum: Checksum, epoch: Epoch = .unknown) {
        self.txid = txid
        self.checksum = checksum
        self.epoch = epoch
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
