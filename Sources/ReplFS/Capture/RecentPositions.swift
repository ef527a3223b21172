/// The last positions a database went through (TXID and checksum), newest
/// last, for the most recent 65,536 transactions.
///
/// A node that applied the primary's stream records some transactions only
/// as merged LTX files (one file for a batch). If it becomes primary, a
/// replica may stand in the middle of such a file; this record is how the
/// new primary confirms that the replica's position is part of its own
/// history (same TXID, same checksum), so the replica gets the rest of the
/// file instead of a snapshot and a copy aside.
struct RecentPositions {
    static let capacity = 65_536
    private var entries: [Position] = []
    private var start = 0

    /// Records the position after a transaction (TXIDs only grow).
    mutating func record(_ position: Position) {
        if let last = newest, position.txid <= last.txid { removeAll() }
        if entries.count < Self.capacity {
            entries.append(position)
        } else {
            entries[start] = position
            start = (start + 1) % Self.capacity
        }
    }

    /// Forgets everything (the content was replaced whole).
    mutating func removeAll() {
        entries.removeAll(keepingCapacity: true)
        start = 0
    }

    private var newest: Position? {
        entries.isEmpty ? nil : entries[(start + entries.count - 1) % entries.count]
    }

    /// The checksum the database had right after `txid`, if recorded.
    func checksum(at txid: TXID) -> Checksum? {
        var low = 0
        var high = entries.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let entry = entries[(start + middle) % entries.count]
            if entry.txid == txid { return entry.checksum }
            if entry.txid < txid { low = middle + 1 } else { high = middle - 1 }
        }
        return nil
    }
}
