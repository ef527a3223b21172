/// Byte ranges of a database file written during one rollback-journal transaction.
///
/// Kept as byte ranges rather than page numbers because the page size of the
/// result is only known at the commit point (VACUUM can change it).
struct DirtyRanges: Sendable {
    private var ranges: [(start: Int64, end: Int64)] = []

    var isEmpty: Bool { ranges.isEmpty }

    mutating func insert(offset: Int64, count: Int) {
        guard count > 0 else { return }
        let end = offset + Int64(count)
        // Most transactions write a handful of pages, often in ascending order:
        // extend the last range when it touches.
        if let last = ranges.last, offset <= last.end, end >= last.start {
            ranges[ranges.count - 1] = (min(last.start, offset), max(last.end, end))
        } else {
            ranges.append((offset, end))
        }
    }

    mutating func removeAll() { ranges.removeAll(keepingCapacity: true) }

    /// The distinct 1-based page numbers the ranges touch, ascending.
    func pageNumbers(pageSize: Int) -> [PageNumber] {
        var pages = Set<PageNumber>()
        let size = Int64(pageSize)
        for range in ranges {
            var page = range.start / size
            while page * size < range.end {
                pages.insert(PageNumber(UInt32(truncatingIfNeeded: page + 1)))
                page += 1
            }
        }
        return pages.sorted()
    }
}
