/// What a replicated batch is checked against: the database's position and
/// page checksums with the batch's earlier files over them. The state itself
/// changes only once the batch is recorded and written.
struct BatchView {
    var position: Position
    var pageSize: Int
    var pageCount: UInt32
    /// The state's checksums cover every page (false before the first full capture).
    var complete: Bool
    /// Pages past this read as zero (a file cut the database shorter).
    var keptBase: UInt32
    /// Checksums the batch's files set.
    var changed: [PageNumber: Checksum] = [:]

    init(_ state: borrowing Database.State) {
        position = state.position
        pageSize = state.pages.pageSize
        pageCount = state.pages.pageCount
        complete = state.pages.isComplete
        keptBase = UInt32(state.pages.pageChecksums.count)
    }

    func checksum(_ pgno: PageNumber, base: borrowing [Checksum]) -> Checksum {
        if let value = changed[pgno] { return value }
        return pgno.rawValue <= keptBase ? base[Int(pgno.rawValue) - 1] : .zero
    }

    /// The view after `transaction`, as ``Database/apply(_:to:)`` will leave the state.
    mutating func advance(_ transaction: Database.Prepared) {
        if transaction.allPages {
            changed.removeAll()
            keptBase = 0
        } else if transaction.commitSize < pageCount {
            keptBase = min(keptBase, transaction.commitSize)
            changed = changed.filter { $0.key.rawValue <= transaction.commitSize }
        }
        for (pgno, value) in transaction.updates { changed[pgno] = value }
        position = Position(txid: transaction.txid, checksum: transaction.checksum, epoch: transaction.epoch)
        pageCount = transaction.commitSize
        if transaction.commitSize > 0 { pageSize = transaction.pageSize }
        complete = true
    }
}
