/// Reads and fully verifies an LTX file (format version 3) as a stream.
///
/// Use it in three steps: `decodeHeader()`, then `nextPage(into:)` until it
/// returns `nil`, then `finish()`. Memory stays bounded by one buffered frame
/// (about 64 KiB plus the largest compressed page) and a 16-byte record per
/// page, so arbitrarily large snapshots can be verified or applied.
///
/// Everything the format defines is checked: header rules, page order and
/// bounds, snapshot completeness, that every LZ4 block decompresses to exactly
/// one page, that the page index matches the frames actually read, the page
/// index size, the file checksum, the trailer rules, that a snapshot's
/// post-apply checksum matches its pages, and that nothing follows the
/// trailer. Errors carry the page number and byte offset where they occur.
///
/// Pages are handed out *before* the file checksum can be verified (it
/// covers the whole file), so callers that apply pages must treat the result
/// as provisional until `finish()` succeeds.
///
/// Pages come in either encoding an LTX v3 file may hold: with the
/// size-prefix flag, a u32 size and an LZ4 *block* (ReplFS's log and
/// replication, upstream since ltx 0.5.2); without it, an LZ4 *frame*
/// (older upstream encoders, and the backup archive's files, which every
/// Litestream 0.5 release reads).
public struct LTXDecoder<Source: LTXByteSource> {
    /// Where the decoder is in the file.
    private enum State {
        case header, pages, index, finished
    }

    /// What the page index must say about one frame.
    private struct Frame {
        var pgno: UInt32
        var offset: Int
        var size: Int
    }

    /// The input.
    public private(set) var source: Source
    /// The header, once `decodeHeader()` has succeeded.
    public private(set) var header: LTXHeader?
    /// The trailer, once `finish()` has succeeded.
    public private(set) var trailer: LTXTrailer?
    /// Bytes consumed from the start of the file; the offset in error messages.
    public private(set) var bytesConsumed = 0

    private var state = State.header
    /// Read-ahead buffer; `buffer[start..<end]` is read but not yet consumed.
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var hasher = CRC64()
    private var frames: [Frame] = []
    private var lastPage: UInt32 = 0
    /// The database checksum of the pages read so far (snapshots only).
    private var databaseChecksum = Checksum.emptyDatabase
    private var maxCompressedSize = 0
    /// For pages stored as LZ4 frames, made on first use.
    private var frameDecoder: LZ4.FrameDecoder?

    /// The default read-ahead size: large enough to make `read(2)` calls rare.
    private static var readAheadSize: Int { 64 * 1024 }

    /// Decodes the file that `source` delivers from its current position.
    public init(source: Source) {
        self.source = source
        self.buffer = [UInt8](repeating: 0, count: Self.readAheadSize)
    }

    /// The number of page frames decoded so far.
    public var pageCount: Int { frames.count }

    /// Reads and validates the 100-byte header. Must be called first, once.
    public mutating func decodeHeader() throws(LTXError) -> LTXHeader {
        guard state == .header else {
            throw .misuse("decodeHeader called twice")
        }
        try fill(LTXHeader.size, "\(LTXHeader.size)-byte header")
        let header = try withBuffered(LTXHeader.size) { (bytes) throws(LTXError) in
            try LTXHeader(decoding: bytes)
        }
        try header.validate()
        consume(LTXHeader.size, hashing: true)
        maxCompressedSize = LZ4.compressBound(Int(header.pageSize))
        self.header = header
        state = .pages
        return header
    }

    /// Decodes the next page into `page`, which must be exactly `pageSize`
    /// bytes, and returns its number; returns `nil` at the end of the page
    /// block (and on every later call until `finish()`).
    public mutating func nextPage(into page: UnsafeMutableRawBufferPointer) throws(LTXError) -> PageNumber? {
        switch state {
        case .header: throw .misuse("nextPage called before decodeHeader")
        case .finished: throw .misuse("nextPage called after finish")
        case .index: return nil
        case .pages: break
        }
        guard let header else { throw .misuse("no header") }
        guard page.count == Int(header.pageSize) else {
            throw .misuse("page buffer is \(page.count) bytes, expected the page size \(header.pageSize)")
        }

        let frameOffset = bytesConsumed
        try fill(LTXPageHeader.size, "\(LTXPageHeader.size)-byte page header or end-of-pages marker")
        let pageHeader = try withBuffered(LTXPageHeader.size) { (bytes) throws(LTXError) in
            try LTXPageHeader(decoding: bytes)
        }
        if pageHeader.isTerminator {
            consume(LTXPageHeader.size, hashing: true)
            try checkSnapshotComplete(header, at: frameOffset)
            state = .index
            return nil
        }
        let pgno = pageHeader.pgno
        try checkFrameHeader(pageHeader, header, at: frameOffset)
        if !pageHeader.flags.contains(.sizePrefix) {
            try decodeLZ4Frame(pgno, into: page, at: frameOffset)
            return pgno
        }

        let prefixEnd = LTXPageHeader.size + LTXPageHeader.sizePrefixSize
        try fill(prefixEnd, "page \(pgno) compressed size")
        let compressedSize = withBuffered(prefixEnd) { Int(BigEndian.load(UInt32.self, from: $0, at: LTXPageHeader.size)) }
        guard compressedSize > 0, compressedSize <= maxCompressedSize else {
            throw .corruptPage(pgno, offset: frameOffset, reason:
                "compressed size \(compressedSize) is outside 1...\(maxCompressedSize), the LZ4 bound for a \(header.pageSize)-byte page")
        }
        let frameSize = prefixEnd + compressedSize
        try fill(frameSize, "page \(pgno) payload of \(compressedSize) bytes")
        let produced = withBuffered(frameSize) { frame in
            LZ4.decompress(UnsafeRawBufferPointer(rebasing: frame[prefixEnd...]), into: page)
        }
        guard produced == page.count else {
            let detail = produced.map { "got \($0) bytes" } ?? "malformed block"
            throw .corruptPage(pgno, offset: frameOffset, reason:
                "lz4 block does not decompress to \(header.pageSize) bytes (\(detail))")
        }

        // The file checksum covers the frame header and size prefix as
        // stored, then the page uncompressed.
        consume(prefixEnd, hashing: true)
        consume(compressedSize, hashing: false)
        hasher.update(UnsafeRawBufferPointer(page))
        if header.isSnapshot && header.tracksChecksums {
            databaseChecksum = databaseChecksum.replacingPage(old: .zero, new: .page(pgno, UnsafeRawBufferPointer(page)))
        }
        frames.append(Frame(pgno: pgno.rawValue, offset: frameOffset, size: frameSize))
        lastPage = pgno.rawValue
        return pgno
    }

    /// A page stored as an LZ4 frame (no size-prefix flag: what upstream
    /// wrote before ltx 0.5.2, and what the backup archive writes for
    /// Litestream 0.5 releases before 0.5.16). Frames are self-delimiting:
    /// fed to liblz4 as they are read, until it says the frame ended, which
    /// must be after exactly one page and within the LZ4 bound.
    private mutating func decodeLZ4Frame(_ pgno: PageNumber, into page: UnsafeMutableRawBufferPointer, at frameOffset: Int) throws(LTXError) {
        guard let frames = frameDecoder ?? LZ4.FrameDecoder() else { throw .misuse("cannot create an LZ4 frame decoder") }
        frameDecoder = frames
        consume(LTXPageHeader.size, hashing: true)
        let limit = LZ4.frameBound(page.count) + 64
        var read = 0
        var written = 0
        var starved = false
        while true {
            // More input only when liblz4 used up what is buffered or
            // could not go on with it (a frame may end before the buffer).
            if starved || end == start { try fill(min(end - start + 1, limit - read), "page \(pgno) LZ4 frame") }
            let step = withBuffered(end - start) { bytes in
                frames.decode(bytes, into: UnsafeMutableRawBufferPointer(rebasing: page[written...]))
            }
            guard let step else {
                throw .corruptPage(pgno, offset: frameOffset, reason: "malformed LZ4 frame")
            }
            consume(step.read, hashing: false)
            read += step.read
            written += step.written
            if step.ended { break }
            starved = step.read == 0 && step.written == 0
            // No progress with a full page, or past the bound: not one page.
            if (starved && (written == page.count || end - start >= limit)) || read >= limit {
                frames.reset()
                throw .corruptPage(pgno, offset: frameOffset, reason: "LZ4 frame longer than one \(page.count)-byte page")
            }
        }
        guard written == page.count else {
            throw .corruptPage(pgno, offset: frameOffset, reason: "LZ4 frame does not decompress to \(page.count) bytes (got \(written))")
        }
        hasher.update(UnsafeRawBufferPointer(page))
        if let header, header.isSnapshot && header.tracksChecksums {
            databaseChecksum = databaseChecksum.replacingPage(old: .zero, new: .page(pgno, UnsafeRawBufferPointer(page)))
        }
        self.frames.append(Frame(pgno: pgno.rawValue, offset: frameOffset, size: bytesConsumed - frameOffset))
        lastPage = pgno.rawValue
    }

    /// Convenience for `nextPage(into:)` that sizes `page` to the page size.
    public mutating func nextPage(into page: inout [UInt8]) throws(LTXError) -> PageNumber? {
        guard let header else { throw .misuse("nextPage called before decodeHeader") }
        if page.count != Int(header.pageSize) {
            page = [UInt8](repeating: 0, count: Int(header.pageSize))
        }
        return try page.withUnsafeMutableBufferPointer { (buffer) throws(LTXError) in
            try nextPage(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Reads the page index and trailer and verifies the whole file. Any
    /// pages not yet read are decoded (and checked) first, so
    /// `decodeHeader()` followed by `finish()` verifies a file completely.
    ///
    /// Throws if the index disagrees with the frames, the file checksum or a
    /// snapshot's post-apply checksum does not match, the trailer breaks a
    /// rule, or bytes follow the trailer.
    public mutating func finish() throws(LTXError) -> LTXTrailer {
        switch state {
        case .header: throw .misuse("finish called before decodeHeader")
        case .finished: throw .misuse("finish called twice")
        case .pages:
            var scratch = [UInt8]()
            while try nextPage(into: &scratch) != nil {}
        case .index: break
        }
        guard let header else { throw .misuse("no header") }

        try readPageIndex()

        try fill(LTXTrailer.size, "\(LTXTrailer.size)-byte trailer")
        let trailer = try withBuffered(LTXTrailer.size) { (bytes) throws(LTXError) in
            try LTXTrailer(decoding: bytes)
        }
        consume(8, hashing: true)  // the post-apply checksum is covered
        consume(8, hashing: false)  // the file checksum is not
        let computed = Checksum(Checksum.flag.rawValue | hasher.value)
        guard computed == trailer.fileChecksum else {
            throw .checksumMismatch(what: "file", stored: trailer.fileChecksum, computed: computed)
        }
        try trailer.validate(for: header)
        if header.isSnapshot && header.tracksChecksums && trailer.postApplyChecksum != databaseChecksum {
            throw .checksumMismatch(what: "post-apply", stored: trailer.postApplyChecksum, computed: databaseChecksum)
        }
        try checkEndOfInput()
        state = .finished
        self.trailer = trailer
        return trailer
    }

    // MARK: - Rules

    /// Validates a non-terminator page header against the format and the
    /// ordering rules.
    private func checkFrameHeader(_ pageHeader: LTXPageHeader, _ header: LTXHeader, at offset: Int) throws(LTXError) {
        let pgno = pageHeader.pgno
        let n = pgno.rawValue
        if n == 0 {
            throw .corrupt(offset: offset, reason: "page header has page number 0 but non-zero flags 0x\(String(pageHeader.flags.rawValue, radix: 16))")
        }
        if !LTXPageHeader.Flags.all.isSuperset(of: pageHeader.flags) {
            throw .corruptPage(pgno, offset: offset, reason: "invalid page header flags 0x\(String(pageHeader.flags.rawValue, radix: 16))")
        }
        if n <= lastPage {
            throw .corruptPage(pgno, offset: offset, reason: "out of order: follows page \(lastPage)")
        }
        if n > header.commit {
            throw .corruptPage(pgno, offset: offset, reason: "beyond the commit size of \(header.commit) pages")
        }
        let lock = header.lockPage.rawValue
        if n == lock {
            throw .corruptPage(pgno, offset: offset, reason: "the lock page must not be stored")
        }
        if header.isSnapshot {
            let expected = lastPage + 1 == lock ? lastPage + 2 : lastPage + 1
            if n != expected {
                throw .corruptPage(pgno, offset: offset, reason: "snapshot is missing page \(expected)")
            }
        }
    }

    /// A snapshot must end with page `commit` (or just before the lock page).
    private func checkSnapshotComplete(_ header: LTXHeader, at offset: Int) throws(LTXError) {
        guard header.isSnapshot else { return }
        let lock = header.lockPage.rawValue
        let expectedLast = header.commit == lock ? lock - 1 : header.commit
        if lastPage != expectedLast {
            throw .corrupt(offset: offset, reason:
                "snapshot ends after page \(lastPage) but its commit size is \(header.commit) pages")
        }
    }

    /// Reads the varint page index and its size field and checks both
    /// against the frames that were actually decoded.
    private mutating func readPageIndex() throws(LTXError) {
        let indexStart = bytesConsumed
        for (i, frame) in frames.enumerated() {
            let entryOffset = bytesConsumed
            let entry = i + 1
            let pgno = try readVarint("page index entry \(entry) page number")
            if pgno == 0 {
                throw .corrupt(offset: entryOffset, reason:
                    "page index ends after \(i) entries but the file has \(frames.count) page frames")
            }
            let offset = try readVarint("page index entry \(entry) offset")
            let size = try readVarint("page index entry \(entry) size")
            if pgno != UInt64(frame.pgno) || offset != UInt64(frame.offset) || size != UInt64(frame.size) {
                throw .corrupt(offset: entryOffset, reason:
                    "page index entry \(entry) (page \(pgno), offset \(offset), size \(size)) does not match "
                    + "the page frame (page \(frame.pgno), offset \(frame.offset), size \(frame.size))")
            }
        }
        let terminatorOffset = bytesConsumed
        if try readVarint("page index terminator") != 0 {
            throw .corrupt(offset: terminatorOffset, reason:
                "page index has more entries than the \(frames.count) page frames")
        }
        let indexSize = bytesConsumed - indexStart
        try fill(8, "8-byte page index size")
        let storedSize = withBuffered(8) { BigEndian.load(UInt64.self, from: $0, at: 0) }
        guard storedSize == UInt64(indexSize) else {
            throw .corrupt(offset: bytesConsumed, reason:
                "page index size field says \(storedSize) bytes but the index is \(indexSize) bytes")
        }
        consume(8, hashing: true)
    }

    /// Reads one unsigned LEB128 varint, hashing its bytes.
    private mutating func readVarint(_ what: @autoclosure () -> String) throws(LTXError) -> UInt64 {
        let itemOffset = bytesConsumed
        var value: UInt64 = 0
        for i in 0..<LEB128.maxLength {
            try fill(1, what())
            let byte = withBuffered(1) { $0[0] }
            consume(1, hashing: true)
            if i == LEB128.maxLength - 1 && byte > 1 {
                break
            }
            value |= UInt64(byte & 0x7F) << (7 * UInt64(i))
            if byte < 0x80 {
                return value
            }
        }
        throw .corrupt(offset: itemOffset, reason: "\(what()) is not a valid 64-bit varint")
    }

    /// LTX files end exactly after the trailer.
    private mutating func checkEndOfInput() throws(LTXError) {
        if end > start {
            throw .trailingBytes(offset: bytesConsumed)
        }
        start = 0
        end = 0
        if try readIntoBuffer() > 0 {
            throw .trailingBytes(offset: bytesConsumed)
        }
    }

    // MARK: - Buffering

    /// Makes at least `count` unconsumed bytes available in the buffer,
    /// reading from the source as needed; throws `.truncated` naming `what`
    /// if the input ends first.
    private mutating func fill(_ count: Int, _ what: @autoclosure () -> String) throws(LTXError) {
        if end - start >= count {
            return
        }
        if start > 0 {
            let pending = end - start
            buffer.withUnsafeMutableBytes { bytes in
                let base = bytes.baseAddress.unsafelyUnwrapped
                base.copyMemory(from: base + start, byteCount: pending)
            }
            start = 0
            end = pending
        }
        if buffer.count < count {
            buffer.append(contentsOf: repeatElement(0, count: max(count, Self.readAheadSize + maxCompressedSize) - buffer.count))
        }
        while end < count {
            if try readIntoBuffer() == 0 {
                throw .truncated(offset: bytesConsumed, expected: "\(what()); the file ends at offset \(bytesConsumed + end - start)")
            }
        }
    }

    /// One `read` from the source into the free tail of the buffer.
    private mutating func readIntoBuffer() throws(LTXError) -> Int {
        var storage: [UInt8] = []
        swap(&storage, &buffer)
        defer { swap(&storage, &buffer) }
        let free = end
        let n = try storage.withUnsafeMutableBufferPointer { (pointer) throws(LTXError) -> Int in
            let tail = UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(pointer)[free...])
            return try source.read(into: tail)
        }
        end += n
        return n
    }

    /// Runs `body` over the next `count` buffered bytes (which `fill` must
    /// have made available) without consuming them.
    private func withBuffered<R, E: Error>(_ count: Int, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try buffer.withUnsafeBufferPointer { (pointer) throws(E) -> R in
            try body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(pointer)[start..<start + count]))
        }
    }

    /// Marks `count` buffered bytes as read, optionally adding them to the
    /// file checksum.
    private mutating func consume(_ count: Int, hashing: Bool) {
        if hashing {
            var crc = hasher
            withBuffered(count) { crc.update($0) }
            hasher = crc
        }
        start += count
        bytesConsumed += count
    }
}

/// A decoder is a plain value, so it can move between tasks whenever its
/// source can.
extension LTXDecoder: Sendable where Source: Sendable {}
