/// What of a database file the kernel must forget after a replica changed
/// it underneath its readers.
///
/// Dropping the whole file after every applied batch is correct but makes
/// every reader on the replica fetch every page again through FUSE, so a
/// large database read while the primary writes runs at FUSE speed instead
/// of page-cache speed. A batch usually changes a handful of pages: only
/// those byte ranges (and the tail cut off when the file shrinks) are
/// dropped. The kernel refreshes the file's attributes either way.
public enum CacheInvalidation: Sendable, Equatable {
    /// Everything: the file was replaced, rewritten whole or changed page size.
    case wholeFile
    /// Coalesced, sorted byte ranges; an upper bound of `Int64.max` means
    /// "to the end of the file".
    case byteRanges([Range<Int64>])

    /// More ranges than this are not worth a notification each.
    public static let maxRanges = 64

    /// The ranges covering `pages` (those within the new size) and, if the
    /// file shrank, everything after its new end.
    public static func pages(
        _ pages: some Sequence<PageNumber>, pageSize: Int, oldPageCount: UInt32, newPageCount: UInt32, maxRanges: Int = maxRanges
    ) -> CacheInvalidation {
        let size = Int64(pageSize)
        var ranges: [Range<Int64>] = []
        for pgno in pages.filter({ $0.rawValue >= 1 && $0.rawValue <= newPageCount }).sorted() {
            let start = Int64(pgno.fileOffset(pageSize: pageSize))
            if let last = ranges.last, last.upperBound == start {
                ranges[ranges.count - 1] = last.lowerBound..<(start + size)
            } else {
                ranges.append(start..<(start + size))
            }
        }
        if newPageCount < oldPageCount {
            let end = Int64(newPageCount) * size
            if let last = ranges.last, last.upperBound == end {
                ranges[ranges.count - 1] = last.lowerBound..<Int64.max
            } else {
                ranges.append(end..<Int64.max)
            }
        }
        return ranges.count > maxRanges ? .wholeFile : .byteRanges(ranges)
    }
}
