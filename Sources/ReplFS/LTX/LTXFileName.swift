/// The canonical name of an LTX file: `%016x-%016x.ltx` (min and max TXID in
/// sixteen lowercase hex digits).
///
/// Fixed-width names sort lexically in TXID order, so a plain directory
/// listing is already in apply order, and the name alone tells which
/// transactions a file covers without opening it.
public struct LTXFileName: Hashable, Sendable, CustomStringConvertible {
    /// The first transaction in the file.
    public var minTXID: TXID
    /// The last transaction in the file.
    public var maxTXID: TXID

    /// The name's length: two 16-digit TXIDs, a dash and ".ltx".
    public static let length = 37

    /// Names the file covering `minTXID...maxTXID`.
    public init(minTXID: TXID, maxTXID: TXID) {
        self.minTXID = minTXID
        self.maxTXID = maxTXID
    }

    /// Parses a bare file name (no directory). Only the exact canonical form
    /// is accepted, so each TXID range has exactly one name.
    public init(parsing name: String) throws(LTXError) {
        let utf8 = Array(name.utf8)
        guard utf8.count == LTXFileName.length,
              utf8[16] == UInt8(ascii: "-"),
              name.hasSuffix(".ltx"),
              let minValue = HexFormat.parseSixteenDigits(name.prefix(16)),
              let maxValue = HexFormat.parseSixteenDigits(name.dropFirst(17).prefix(16))
        else {
            throw .invalidFileName("\"\(name)\" is not of the form %016x-%016x.ltx")
        }
        self.init(minTXID: TXID(minValue), maxTXID: TXID(maxValue))
    }

    /// The file name, e.g. `0000000000000001-0000000000000007.ltx`.
    public var description: String { "\(minTXID)-\(maxTXID).ltx" }
}
