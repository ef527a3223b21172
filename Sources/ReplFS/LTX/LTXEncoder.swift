/// Builds an LTX file (format version 3) in memory, one page at a time.
///
/// The encoder writes nothing itself: encoded bytes accumulate in an internal
/// buffer that the caller drains whenever it likes with `takeBytes()` or
/// `drain(_:)`. Draining after every few pages keeps memory bounded, so a
/// snapshot of a 1 GiB database can be streamed to a file; not draining until
/// `finish` gives the whole file in one buffer, which suits the common
/// one-page transaction.
///
/// Every rule is checked before anything is emitted, so a rejected `append`
/// leaves the encoder unchanged and usable. Call `reset(header:)` to encode the
/// next file while reusing the buffers.
///
/// ```swift
/// var encoder = try LTXEncoder(header: header)
/// try encoder.append(PageNumber(1), page: page)
/// try encoder.finish(postApplyChecksum: checksum)
/// let file = encoder.takeBytes()
/// ```
public struct LTXEncoder: Sendable {
    /// How each page is compressed.
    public enum PageEncoding: Sendable {
        /// A u32 size prefix and an LZ4 block (flag `sizePrefix`): what
        /// ReplFS's log and replication use, and upstream since ltx 0.5.2.
        case lz4Block
        /// An LZ4 frame (64 KiB blocks, content checksum), no flag: what
        /// every Litestream 0.5 release reads (0.5.15 and older read only
        /// this), so the backup archive's files use it.
        case lz4Frame
    }

    /// The header the file was started with.
    public private(set) var header: LTXHeader
    public let pageEncoding: PageEncoding

    /// The trailer, available once `finish` has succeeded.
    public private(set) var trailer: LTXTrailer?

    /// The number of pages appended so far.
    public private(set) var pageCount: Int = 0

    /// Total bytes encoded so far, drained or not. This is also the offset of
    /// the next byte in the file, which the page index needs.
    public private(set) var bytesEncoded: Int = 0

    /// Encoded bytes not yet handed to the caller.
    private var output: [UInt8] = []
    /// Scratch space for one compressed page, reused across pages and files.
    private var compressed: [UInt8] = []
    /// The page index entries (varints), built as frames are written so no
    /// per-page bookkeeping is needed at `finish`.
    private var index: [UInt8] = []
    /// The running file checksum.
    private var hasher = CRC64()
    /// The last page appended, zero before the first.
    private var lastPage: UInt32 = 0
    /// For snapshots: the database checksum of the pages appended so far, so
    /// `finish` can reject a wrong post-apply checksum before it is written.
    private var snapshotChecksum = Checksum.emptyDatabase

    /// Starts a file with `header`, which must pass `LTXHeader.validate()`.
    public init(header: LTXHeader, pageEncoding: PageEncoding = .lz4Block) throws(LTXError) {
        self.header = header
        self.pageEncoding = pageEncoding
        try reset(header: header)
    }

    /// Discards any state (including undrained bytes) and starts a new file
    /// with `header`, keeping the allocated buffers for reuse.
    public mutating func reset(header: LTXHeader) throws(LTXError) {
        try header.validate()
        let pageSize = Int(header.pageSize)
        self.header = header
        trailer = nil
        pageCount = 0
        lastPage = 0
        snapshotChecksum = .emptyDatabase
        hasher = CRC64()
        output.removeAll(keepingCapacity: true)
        output.reserveCapacity(LTXHeader.size + pageSize + 64)
        index.removeAll(keepingCapacity: true)
        let bound = pageEncoding == .lz4Block ? LZ4.compressBound(pageSize) : LZ4.frameBound(pageSize)
        if compressed.count < bound {
            compressed = [UInt8](repeating: 0, count: bound)
        }
        header.encode(into: &output)
        output.withUnsafeBytes { hasher.update($0) }
        bytesEncoded = output.count
    }

    /// Whether `finish` has completed; no more pages can be appended.
    public var isFinished: Bool { trailer != nil }

    /// The number of encoded bytes waiting to be drained.
    public var bufferedByteCount: Int { output.count }

    /// Compresses and appends one page.
    ///
    /// - Parameters:
    ///   - pgno: The page number. Pages must come in strictly ascending order,
    ///     not exceed the header's `commit`, and never be the lock page. A
    ///     snapshot must supply every page from 1 to `commit` except the lock
    ///     page, in order.
    ///   - page: Exactly `pageSize` bytes of page content.
    public mutating func append(_ pgno: PageNumber, page: UnsafeRawBufferPointer) throws(LTXError) {
        guard trailer == nil else {
            throw .misuse("append(\(pgno)) after finish")
        }
        guard page.count == Int(header.pageSize) else {
            throw .invalidPage(pgno, reason: "page is \(page.count) bytes, expected the page size \(header.pageSize)")
        }
        try checkOrder(pgno)

        let compressedSize = compressed.withUnsafeMutableBytes { buffer in
            pageEncoding == .lz4Block ? LZ4.compress(page, into: buffer) : LZ4.compressFrame(page, into: buffer)
        }
        guard compressedSize > 0 else {
            throw .invalidPage(pgno, reason: "lz4 compression failed")
        }

        // Frame: page header, compressed-size prefix, LZ4 block (or page
        // header, LZ4 frame). The file checksum covers the header and
        // prefix as stored but the page *uncompressed*, so it does not
        // depend on the compressor.
        let frameOffset = bytesEncoded
        let frameStart = output.count
        if pageEncoding == .lz4Block {
            LTXPageHeader(pgno: pgno, flags: .sizePrefix).encode(into: &output)
            BigEndian.append(UInt32(compressedSize), to: &output)
        } else {
            LTXPageHeader(pgno: pgno, flags: []).encode(into: &output)
        }
        var crc = hasher
        output.withUnsafeBytes { crc.update(UnsafeRawBufferPointer(rebasing: $0[frameStart...])) }
        crc.update(page)
        hasher = crc
        compressed.withUnsafeBytes { output.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[..<compressedSize])) }

        let frameSize = output.count - frameStart
        bytesEncoded += frameSize
        LEB128.append(UInt64(pgno.rawValue), to: &index)
        LEB128.append(UInt64(frameOffset), to: &index)
        LEB128.append(UInt64(frameSize), to: &index)

        if header.isSnapshot && header.tracksChecksums {
            snapshotChecksum = snapshotChecksum.replacingPage(old: .zero, new: .page(pgno, page))
        }
        lastPage = pgno.rawValue
        pageCount += 1
    }

    /// Convenience for `append(_:page:)` with an array.
    public mutating func append(_ pgno: PageNumber, page: [UInt8]) throws(LTXError) {
        try page.withUnsafeBufferPointer { (buffer) throws(LTXError) in
            try append(pgno, page: UnsafeRawBufferPointer(buffer))
        }
    }

    /// Ends the page block and writes the page index and trailer.
    ///
    /// - Parameter postApplyChecksum: The database checksum after applying
    ///   this file: `.zero` with `noChecksum`, `.emptyDatabase` when
    ///   `commit` is 0, otherwise a flagged checksum. For snapshots it must
    ///   equal the checksum of the appended pages, which is verified here.
    public mutating func finish(postApplyChecksum: Checksum) throws(LTXError) {
        guard trailer == nil else {
            throw .misuse("finish called twice")
        }
        if header.isSnapshot {
            let lock = header.lockPage.rawValue
            let expectedLast = header.commit == lock ? lock - 1 : header.commit
            if lastPage != expectedLast {
                throw .invalidPage(
                    PageNumber(lastPage &+ 1),
                    reason: "snapshot is incomplete: ends after page \(lastPage) but commit is \(header.commit)")
            }
        }
        var check = LTXTrailer(postApplyChecksum: postApplyChecksum, fileChecksum: .flag)
        try check.validate(for: header)
        if header.isSnapshot && header.tracksChecksums && postApplyChecksum != snapshotChecksum {
            throw .checksumMismatch(what: "snapshot post-apply", stored: postApplyChecksum, computed: snapshotChecksum)
        }

        let tailStart = output.count
        LTXPageHeader.terminator.encode(into: &output)
        output.append(contentsOf: index)
        LEB128.append(0, to: &output)
        BigEndian.append(UInt64(index.count + 1), to: &output)
        BigEndian.append(postApplyChecksum.rawValue, to: &output)
        var crc = hasher
        output.withUnsafeBytes { crc.update(UnsafeRawBufferPointer(rebasing: $0[tailStart...])) }
        hasher = crc

        check.fileChecksum = Checksum(Checksum.flag.rawValue | crc.value)
        BigEndian.append(check.fileChecksum.rawValue, to: &output)
        bytesEncoded += output.count - tailStart
        trailer = check
    }

    /// Returns the bytes encoded since the last drain and empties the buffer.
    public mutating func takeBytes() -> [UInt8] {
        let bytes = output
        output = []
        output.reserveCapacity(bytes.count)
        return bytes
    }

    /// Passes the bytes encoded since the last drain to `body`, then empties
    /// the buffer keeping its capacity, which avoids an allocation per drain.
    /// If `body` throws, the bytes stay buffered so the caller can retry.
    public mutating func drain<E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        try output.withUnsafeBufferPointer { (buffer) throws(E) in
            try body(UnsafeRawBufferPointer(buffer))
        }
        output.removeAll(keepingCapacity: true)
    }

    /// Rejects pages that would break ordering, bounds, lock-page or snapshot
    /// rules, before anything is written.
    private func checkOrder(_ pgno: PageNumber) throws(LTXError) {
        let n = pgno.rawValue
        if n == 0 {
            throw .invalidPage(pgno, reason: "page numbers start at 1")
        }
        if n > header.commit {
            throw .invalidPage(pgno, reason: "beyond the commit size of \(header.commit) pages")
        }
        let lock = header.lockPage.rawValue
        if n == lock {
            throw .invalidPage(pgno, reason: "the lock page is never stored in LTX files")
        }
        if n <= lastPage {
            throw .invalidPage(pgno, reason: "out of order: pages must ascend, previous was \(lastPage)")
        }
        if header.isSnapshot {
            let expected = lastPage + 1 == lock ? lastPage + 2 : lastPage + 1
            if n != expected {
                throw .invalidPage(pgno, reason: "snapshot must contain every page; expected page \(expected)")
            }
        }
    }
}
