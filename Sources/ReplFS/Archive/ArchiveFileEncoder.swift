/// Writes the archive's LTX files in the flavour Litestream 0.5 reads:
/// flags `noChecksum`, pre- and post-apply checksums zero.
///
/// The log's records carry database checksums, which that flavour does
/// not allow, so every archived file is encoded again; the checksum of the
/// position a file leads to goes to ``ArchivePositions`` instead.
enum ArchiveFileEncoder {
    /// What a written file covers.
    struct Written: Sendable {
        var header: LTXHeader
        /// The database checksum after the file, from the last source's
        /// trailer (zero when the sources did not track it).
        var postApply: Checksum
        var bytes: Int64
    }

    /// How many encoded bytes are buffered before they are written out.
    static let chunk = 1 << 20

    /// Merges consecutive LTX files (the log's records, or archived files
    /// of one level) into one file covering their whole range: the last
    /// version of every page any of them changed, the last one's size.
    /// One source is re-encoded page by page; several are merged in memory:
    /// nil once their pages would hold more than `memoryLimit` bytes (the
    /// caller then merges halves of the group).
    static func merge(_ sources: [LTXContent], into file: DurableFile, memoryLimit: Int = 64 << 20) throws(ArchiveError) -> Written? {
        precondition(!sources.isEmpty)
        do throws(LTXError) {
            if sources.count == 1 { return try reencode(sources[0], into: file) }
            var pages: [UInt32: [UInt8]] = [:]
            var first: LTXHeader?
            var last: LTXHeader?
            var postApply = Checksum.zero
            for content in sources {
                var decoder = try content.decoder()
                defer { decoder.source.closeIfFile() }
                let header = try decoder.decodeHeader()
                if let previous = last {
                    // A new page size (VACUUM) or a database created again
                    // after it was deleted: this file holds the whole
                    // database, nothing before it survives.
                    if previous.pageSize != header.pageSize || previous.commit == 0 { pages.removeAll() }
                    if header.commit < previous.commit { pages = pages.filter { $0.key <= header.commit } }
                }
                var page = [UInt8](repeating: 0, count: Int(header.pageSize))
                while let pgno = try decoder.nextPage(into: &page) {
                    pages[pgno.rawValue] = page
                    if pages.count * Int(header.pageSize) > memoryLimit { return nil }
                }
                postApply = try decoder.finish().postApplyChecksum
                if first == nil { first = header }
                last = header
            }
            var header = archived(last!)
            header.minTXID = first!.minTXID
            var encoder = try LTXEncoder(header: header, pageEncoding: .lz4Frame)
            for pgno in pages.keys.sorted() where pgno <= header.commit {
                try encoder.append(PageNumber(pgno), page: pages[pgno]!)
                if encoder.bufferedByteCount >= chunk { try write(&encoder, to: file) }
            }
            return try finish(&encoder, header: header, postApply: postApply, to: file)
        } catch {
            throw ArchiveError("cannot encode an archive file", error)
        }
    }

    /// One source, page by page: a snapshot-sized transaction never sits
    /// in memory whole.
    private static func reencode(_ content: LTXContent, into file: DurableFile) throws(LTXError) -> Written {
        var decoder = try content.decoder()
        defer { decoder.source.closeIfFile() }
        let header = archived(try decoder.decodeHeader())
        var encoder = try LTXEncoder(header: header, pageEncoding: .lz4Frame)
        var page = [UInt8](repeating: 0, count: Int(header.pageSize))
        while let pgno = try decoder.nextPage(into: &page) {
            try encoder.append(pgno, page: page)
            if encoder.bufferedByteCount >= chunk { try write(&encoder, to: file) }
        }
        let postApply = try decoder.finish().postApplyChecksum
        return try finish(&encoder, header: header, postApply: postApply, to: file)
    }

    /// The header in the archive's flavour.
    private static func archived(_ header: LTXHeader) -> LTXHeader {
        LTXHeader(
            flags: .noChecksum, pageSize: header.pageSize, commit: header.commit, minTXID: header.minTXID, maxTXID: header.maxTXID,
            timestamp: header.timestamp)
    }

    private static func finish(_ encoder: inout LTXEncoder, header: LTXHeader, postApply: Checksum, to file: DurableFile) throws(LTXError) -> Written {
        try encoder.finish(postApplyChecksum: .zero)
        try write(&encoder, to: file)
        return Written(header: header, postApply: postApply, bytes: Int64(encoder.bytesEncoded))
    }

    private static func write(_ encoder: inout LTXEncoder, to file: DurableFile) throws(LTXError) {
        let bytes = encoder.takeBytes()
        do throws(Errno) {
            try file.append(bytes)
        } catch {
            throw .io(operation: "write", path: file.path, errno: error.rawValue)
        }
    }

    /// Splits files (in TXID order) into runs whose sizes add up to at most
    /// `limit` bytes (a file larger than that is a run of its own), so a
    /// merge holds a bounded number of pages in memory.
    static func groups<T>(_ items: [T], size: (T) -> Int64, limit: Int64) -> [[T]] {
        var result: [[T]] = []
        var current: [T] = []
        var total: Int64 = 0
        for item in items {
            let itemSize = size(item)
            if !current.isEmpty && total + itemSize > limit {
                result.append(current)
                current = []
                total = 0
            }
            current.append(item)
            total += itemSize
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}
