#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rebuilds a database file by applying a chain of LTX files in TXID order,
/// like upstream `ltx apply`, checking every checksum on the way.
///
/// Each file is checked against the chain rules of `LTXChainVerifier`, its
/// pre-apply checksum against the database as rebuilt so far, its own
/// integrity by the decoder, and after applying it the database checksum
/// must equal its post-apply checksum. The database checksum is maintained
/// incrementally from a per-page checksum array, so each file costs time
/// proportional to the pages it contains, not to the database size.
///
/// If the chain starts with a snapshot the output is truncated first;
/// otherwise the existing output is the base and is scanned once to seed the
/// page checksums. On error the output is left partially written: rebuild
/// into a temporary path and rename it into place on success.
public struct LTXRebuilder: Sendable {
    /// Per-page checksums of the database being rebuilt and their XOR.
    private struct PageChecksums {
        let pageSize: Int
        let lockPage: PageNumber
        /// Entry `i` belongs to page `i + 1`; the lock page's entry is zero.
        var pages: [Checksum] = []
        var database = Checksum.emptyDatabase

        init(pageSize: Int) {
            self.pageSize = pageSize
            self.lockPage = PageNumber.lockPage(pageSize: pageSize)
        }

        /// Records the new content checksum of `pgno`, growing the database
        /// with zero-filled pages if it lies beyond the current end.
        mutating func set(_ pgno: PageNumber, _ checksum: Checksum) {
            let index = Int(pgno.rawValue) - 1
            if index >= pages.count {
                grow(toPageCount: index)
                pages.append(.zero)
            }
            database = database.replacingPage(old: pages[index], new: checksum)
            pages[index] = checksum
        }

        /// Shrinks or zero-extends the database to `count` pages, as
        /// `ftruncate` does to the file.
        mutating func resize(toPageCount count: Int) {
            if count > pages.count {
                grow(toPageCount: count)
            }
            while pages.count > count {
                database = database.replacingPage(old: pages.removeLast(), new: .zero)
            }
        }

        /// Appends zero-filled pages (as a file hole reads back) up to `count`.
        private mutating func grow(toPageCount count: Int) {
            guard count > pages.count else { return }
            let zeros = [UInt8](repeating: 0, count: pageSize)
            while pages.count < count {
                let pgno = PageNumber(UInt32(pages.count + 1))
                let checksum = pgno == lockPage ? .zero : zeros.withUnsafeBytes { Checksum.page(pgno, $0) }
                database = database.replacingPage(old: .zero, new: checksum)
                pages.append(checksum)
            }
        }
    }

    /// Whether the chain must begin with a snapshot. When false, the first
    /// file is applied on top of whatever the output file already contains,
    /// and its pre-apply checksum must match that content.
    public var requireSnapshotStart: Bool

    /// Whether to `fsync` the output before returning.
    public var synchronize: Bool

    /// Whether a file may overlap the range already applied, as a backup
    /// archive's compactions do (see `LTXChainVerifier.allowOverlap`).
    public var allowOverlap: Bool

    /// Creates a rebuilder.
    public init(requireSnapshotStart: Bool = true, synchronize: Bool = true, allowOverlap: Bool = false) {
        self.requireSnapshotStart = requireSnapshotStart
        self.synchronize = synchronize
        self.allowOverlap = allowOverlap
    }

    /// Applies every canonically named LTX file in `directory` to `databasePath`.
    public func rebuild(directory: String, into databasePath: String) throws(LTXError) -> LTXChainSummary {
        try rebuild(files: LTXChainVerifier.files(inDirectory: directory), into: databasePath)
    }

    /// Applies `files` (in any order; they are sorted by TXID) to
    /// `databasePath`, creating it if needed, and returns where the chain ends.
    public func rebuild(files: [String], into databasePath: String) throws(LTXError) -> LTXChainSummary {
        let ordered = try LTXRebuilder.sortedByTXID(files)
        let fd = open(databasePath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .io(operation: "open", path: databasePath, errno: errno)
        }
        defer { close(fd) }

        let verifier = LTXChainVerifier(requireSnapshotStart: requireSnapshotStart, allowOverlap: allowOverlap)
        var state: PageChecksums?
        var first: LTXChainVerifier.Link?
        var previous: LTXChainVerifier.Link?
        for path in ordered {
            do throws(LTXError) {
                let (checksums, link) = try apply(path, to: fd, databasePath: databasePath, after: previous, state: state.take(), verifier: verifier)
                state = checksums
                previous = link
                if first == nil { first = previous }
            } catch {
                if case .brokenChain = error { throw error }
                throw .inFile(path, error)
            }
        }

        guard let first, let last = previous else {
            throw .brokenChain(file: "(no files)", reason: "no LTX files to apply")
        }
        if synchronize && fsync(fd) != 0 {
            throw .io(operation: "fsync", path: databasePath, errno: errno)
        }
        return LTXChainSummary(
            fileCount: ordered.count,
            firstTXID: first.header.minTXID,
            lastTXID: last.header.maxTXID,
            postApplyChecksum: last.trailer.postApplyChecksum,
            pageSize: last.header.pageSize,
            commit: last.header.commit,
            databaseChecksum: state?.database)
    }

    /// Applies one file of the chain to the database open at `fd`, checking
    /// it follows `previous` and, when it tracks checksums, that the content
    /// before and after is what it claims. `state` is the page checksums the
    /// chain has reached (nil before the first file).
    private func apply(
        _ path: String, to fd: Int32, databasePath: String, after previous: LTXChainVerifier.Link?, state: consuming PageChecksums?,
        verifier: LTXChainVerifier
    ) throws(LTXError) -> (PageChecksums, LTXChainVerifier.Link) {
        let source = try LTXFileSource(path: path)
        defer { source.close() }
        var decoder = LTXDecoder(source: source)
        let header = try decoder.decodeHeader()
        try verifier.checkLink(previous: previous, header: header, path: path)
        // An overlapping file's pre-apply checksum is that of the state
        // before its own range, which the chain has passed: not comparable.
        let checksPreApply = header.tracksChecksums && !LTXChainVerifier.overlaps(header, previous: previous)
        let pageSize = Int(header.pageSize)

        var checksums: PageChecksums
        var wholeImage = header.isSnapshot
        if let existing = state.take() {
            if existing.pageSize != pageSize {
                // A page-size change rewrites the whole database: check
                // it follows the old content, then start from empty.
                if checksPreApply && header.preApplyChecksum != existing.database {
                    throw LTXError.checksumMismatch(what: "pre-apply", stored: header.preApplyChecksum, computed: existing.database)
                }
                try LTXRebuilder.truncate(fd, to: 0, path: databasePath)
                checksums = PageChecksums(pageSize: pageSize)
                wholeImage = true
            } else {
                // Moved out rather than copied, so the array stays
                // uniquely referenced and page updates do not copy it.
                checksums = existing
            }
        } else if header.isSnapshot {
            try LTXRebuilder.truncate(fd, to: 0, path: databasePath)
            checksums = PageChecksums(pageSize: pageSize)
        } else {
            checksums = try LTXRebuilder.scan(fd, pageSize: pageSize, path: databasePath)
        }
        if !wholeImage && checksPreApply && header.preApplyChecksum != checksums.database {
            throw LTXError.checksumMismatch(what: "pre-apply", stored: header.preApplyChecksum, computed: checksums.database)
        }

        var page = [UInt8](repeating: 0, count: pageSize)
        while let pgno = try decoder.nextPage(into: &page) {
            try page.withUnsafeBufferPointer { (buffer) throws(LTXError) in
                let bytes = UnsafeRawBufferPointer(buffer)
                try LTXRebuilder.writeAll(fd, bytes, at: pgno.fileOffset(pageSize: pageSize), path: databasePath)
                checksums.set(pgno, Checksum.page(pgno, bytes))
            }
        }
        let trailer = try decoder.finish()
        if wholeImage {
            let lock = PageNumber.lockPage(pageSize: pageSize).rawValue
            let expected = Int(header.commit) - (header.commit >= lock ? 1 : 0)
            if decoder.pageCount != expected {
                throw LTXError.brokenChain(file: path, reason:
                    "changes the page size to \(pageSize) but holds \(decoder.pageCount) of the database's \(expected) pages")
            }
        }
        try LTXRebuilder.truncate(fd, to: Int(header.commit) * pageSize, path: databasePath)
        checksums.resize(toPageCount: Int(header.commit))
        if header.tracksChecksums && trailer.postApplyChecksum != checksums.database {
            throw LTXError.checksumMismatch(what: "post-apply", stored: trailer.postApplyChecksum, computed: checksums.database)
        }
        return (checksums, LTXChainVerifier.Link(path: path, header: header, trailer: trailer))
    }

    /// Orders files by the TXID range in their headers (names may be
    /// arbitrary), reading only the first 100 bytes of each.
    private static func sortedByTXID(_ files: [String]) throws(LTXError) -> [String] {
        var keyed: [(minTXID: TXID, maxTXID: TXID, path: String)] = []
        for path in files {
            do throws(LTXError) {
                let source = try LTXFileSource(path: path)
                defer { source.close() }
                var decoder = LTXDecoder(source: source)
                let header = try decoder.decodeHeader()
                keyed.append((header.minTXID, header.maxTXID, path))
            } catch {
                throw .inFile(path, error)
            }
        }
        keyed.sort { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }
        return keyed.map(\.path)
    }

    /// Reads the existing database once to seed the page checksums.
    private static func scan(_ fd: Int32, pageSize: Int, path: String) throws(LTXError) -> PageChecksums {
        let size = lseek(fd, 0, SEEK_END)
        guard size >= 0 else {
            throw .io(operation: "lseek", path: path, errno: errno)
        }
        guard Int(size) % pageSize == 0 else {
            throw .brokenChain(file: path, reason: "existing database size \(size) is not a multiple of the page size \(pageSize)")
        }
        var checksums = PageChecksums(pageSize: pageSize)
        var page = [UInt8](repeating: 0, count: pageSize)
        for index in 0..<(Int(size) / pageSize) {
            let pgno = PageNumber(UInt32(index + 1))
            try page.withUnsafeMutableBufferPointer { (buffer) throws(LTXError) in
                try readAll(fd, UnsafeMutableRawBufferPointer(buffer), at: index * pageSize, path: path)
            }
            let checksum = pgno == checksums.lockPage ? .zero : page.withUnsafeBytes { Checksum.page(pgno, $0) }
            checksums.set(pgno, checksum)
        }
        return checksums
    }

    /// `pwrite` until every byte is written, retrying on `EINTR`.
    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws(LTXError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "pwrite", path: path, errno: errno)
            }
            done += n
        }
    }

    /// `pread` until `buffer` is full; a short file is an error.
    private static func readAll(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws(LTXError) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "pread", path: path, errno: errno)
            }
            if n == 0 {
                throw .io(operation: "pread", path: path, errno: EIO)
            }
            done += n
        }
    }

    /// `ftruncate`, which also zero-extends.
    private static func truncate(_ fd: Int32, to size: Int, path: String) throws(LTXError) {
        if ftruncate(fd, off_t(size)) != 0 {
            throw .io(operation: "ftruncate", path: path, errno: errno)
        }
    }
}
