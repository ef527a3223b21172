/// The shape of a database's committed content and the checksum of every
/// page, kept in memory (8 bytes a page) so that a transaction's checksum
/// is maintained in O(pages changed) and always equals the content's
/// (design.md, invariant 1).
///
/// A value: capture and replica apply compute the table a transaction
/// leaves and move the database's state to it only once the operation that
/// completes the commit (or the batch's write) has succeeded.
struct PageTable: Sendable {
    var pageSize = 0
    var pageCount: UInt32 = 0
    /// Checksum of page n at index n-1; the lock page's entry is `.zero`.
    /// Shorter than `pageCount` while it does not describe the content
    /// (before the first full capture, after recovery found it unreadable).
    var pageChecksums: [Checksum] = []
    /// The committed header says WAL mode: writes to the database file
    /// outside a rollback-journal transaction are checkpoints.
    var isWAL = false

    /// The last committed content is a database (not dropped, not empty).
    var exists: Bool { pageCount > 0 }

    /// The checksums cover every page, so a transaction can be checked
    /// against them page by page; otherwise the next one reads every page.
    var isComplete: Bool { pageChecksums.count == Int(pageCount) }

    /// The checksum page `pgno` has now (zero past the end).
    func checksum(of pgno: PageNumber) -> Checksum {
        Int(pgno.rawValue) <= pageChecksums.count ? pageChecksums[Int(pgno.rawValue) - 1] : .zero
    }

    /// The table after `transaction` committed: resized to its commit size
    /// (cleared first if it holds every page), its page checksums set.
    mutating func apply(_ transaction: Database.Prepared) {
        let commitSize = Int(transaction.commitSize)
        if transaction.allPages {
            pageChecksums = [Checksum](repeating: .zero, count: commitSize)
        } else if commitSize < pageChecksums.count {
            pageChecksums.removeLast(pageChecksums.count - commitSize)
        } else if commitSize > pageChecksums.count {
            pageChecksums.append(contentsOf: repeatElement(.zero, count: commitSize - pageChecksums.count))
        }
        for (pgno, value) in transaction.updates { pageChecksums[Int(pgno.rawValue) - 1] = value }
        if let isWAL = transaction.isWAL { self.isWAL = isWAL }
        pageCount = transaction.commitSize
        if commitSize > 0 {
            pageSize = transaction.pageSize
        } else {
            isWAL = false
        }
    }
}
