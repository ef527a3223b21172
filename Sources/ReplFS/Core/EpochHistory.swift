/// In which primary term (epoch) each transaction of one database was
/// committed: the epochs, each with the first TXID committed in it.
///
/// The LTX rolling checksum cannot tell two histories apart by itself: it is
/// linear, so the same byte change at the same offset of two different pages
/// moves it the same way. The epoch can (Raft's log-matching rule): two nodes
/// whose positions have the same TXID, committed in the same epoch, hold the
/// same history up to it; the same TXID from two epochs is divergence
/// (design.md, invariant 1).
///
/// A history is a few entries (one per change of primary that committed to
/// the database), so it is kept whole, never pruned with the LTX files, and
/// sent whole to replicas, which adopt it as they apply.
public struct EpochHistory: Equatable, Sendable, CustomStringConvertible {
    public struct Entry: Equatable, Sendable {
        public var epoch: Epoch
        /// The first transaction committed in `epoch`.
        public var firstTXID: TXID

        public init(epoch: Epoch, firstTXID: TXID) {
            self.epoch = epoch
            self.firstTXID = firstTXID
        }
    }

    /// Ascending by `firstTXID` (strictly), no two neighbours in one epoch.
    public private(set) var entries: [Entry]

    /// Most entries a history holds (older ones are dropped first: their
    /// transactions are long gone from every retained log). Bounds what a
    /// peer can make this node keep.
    public static let maximumEntries = 1024

    public init() {
        entries = []
    }

    /// A history from entries in any form: sorted, with later entries for
    /// the same first TXID winning and repeated epochs merged.
    public init(_ entries: [Entry]) {
        self.init()
        for entry in entries.sorted(by: { $0.firstTXID < $1.firstTXID }) { begin(epoch: entry.epoch, at: entry.firstTXID) }
    }

    /// The epoch in which `txid` was committed; nil when this node does not
    /// know (TXID 0, or before the first entry: a log older than epochs).
    public func epoch(at txid: TXID) -> Epoch? {
        guard txid.rawValue > 0 else { return nil }
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].firstTXID <= txid { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : entries[low - 1].epoch
    }

    /// The epoch of the newest entry.
    public var lastEpoch: Epoch? { entries.last?.epoch }

    /// Records that transactions from `txid` on are committed in `epoch`.
    /// Entries at or after `txid` are dropped first: they described
    /// transactions that never committed here. Returns whether it changed.
    @discardableResult
    public mutating func begin(epoch: Epoch, at txid: TXID) -> Bool {
        guard txid.rawValue > 0 else { return false }
        let before = entries
        while let last = entries.last, last.firstTXID >= txid { entries.removeLast() }
        if entries.last?.epoch != epoch { entries.append(Entry(epoch: epoch, firstTXID: txid)) }
        if entries.count > Self.maximumEntries { entries.removeFirst(entries.count - Self.maximumEntries) }
        return entries != before
    }

    /// The history up to and including `txid` (what a node at that position
    /// can vouch for).
    public func through(_ txid: TXID) -> EpochHistory {
        var copy = self
        while let last = copy.entries.last, last.firstTXID > txid { copy.entries.removeLast() }
        return copy
    }

    /// One line per entry: `EPOCH FIRSTTXID`, 16 hex digits each.
    public var description: String {
        entries.map { HexFormat.sixteenDigits($0.epoch.rawValue) + " " + HexFormat.sixteenDigits($0.firstTXID.rawValue) + "\n" }.joined()
    }

    /// Parses ``description``; nil if any line is malformed.
    public init?(parsing text: String) {
        var parsed: [Entry] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, fields[0].count == 16, fields[1].count == 16,
                let epoch = UInt64(fields[0], radix: 16), let txid = UInt64(fields[1], radix: 16), txid > 0
            else { return nil }
            parsed.append(Entry(epoch: Epoch(epoch), firstTXID: TXID(txid)))
        }
        self.init(parsed)
    }
}
