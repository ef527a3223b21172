/// Follows the writes SQLite makes to one `-wal` file and says when a write
/// completes a transaction.
///
/// SQLite appends a transaction as frames (a 24-byte header, then the page)
/// after the last committed frame, and marks the last frame of the transaction
/// with the database size ("commit frame"). A transaction that rolls back
/// leaves frames behind that the next transaction overwrites from the same
/// index. A new WAL header at offset 0 (new salts) restarts numbering at frame
/// 1. See <https://www.sqlite.org/fileformat2.html#walformat> and `wal.c`
/// (`sqlite3WalFrames`, `walRestartLog`).
///
/// The tracker only observes; the ``Database`` it belongs to decides what to
/// do, so that the transaction is logged *before* the completing write reaches
/// the file.
struct WALTracker: Sendable {
    /// A frame written since the last commit.
    struct Frame: Sendable {
        var pageNumber: PageNumber
        var commitSize: UInt32
        /// Bytes of the page written since the header (the kernel may split
        /// one write(2) at page-cache boundaries).
        var dataBytes: Int
        var dataWritten: Bool
    }

    /// A transaction completed by a write.
    struct Commit: Sendable {
        /// Frame indexes (1-based) of the transaction, in order.
        var frames: ClosedRange<Int>
        /// Database size in pages after the commit.
        var commitSize: UInt32
        /// Page number of each frame in `frames`.
        var pageNumbers: [PageNumber]
        var pageSize: Int
        var salt1: UInt32
        var salt2: UInt32
        /// Whether every frame since the last commit is known. If not, the
        /// owner must rebuild the whole content from the files.
        var isComplete: Bool
    }

    private(set) var header: WALHeader?
    /// Index of the last frame that ended a captured transaction.
    private(set) var lastCommit = 0
    private var frames: [Int: Frame] = [:]
    /// Page number to the last committed frame holding it, for this WAL
    /// generation: where the committed version of a page is, if not in the
    /// database file (snapshots read it).
    private(set) var committedPages: [PageNumber: Int] = [:]

    /// Forgets everything, as when the WAL is deleted or truncated to zero.
    mutating func reset() {
        header = nil
        lastCommit = 0
        frames.removeAll()
        committedPages.removeAll()
    }

    /// Records a write of `buffer` at `offset`. Returns the transaction this
    /// write completes, if any. Call ``didCommit(_:)`` once it is logged.
    mutating func observe(_ buffer: UnsafeRawBufferPointer, at offset: Int64) -> Commit? {
        let end = offset + Int64(buffer.count)
        if offset < Int64(WALHeader.size) {
            if offset == 0, let new = WALHeader(buffer) {
                if new != header {
                    header = new
                    lastCommit = 0
                    frames.removeAll(keepingCapacity: true)
                    committedPages.removeAll(keepingCapacity: true)
                }
            } else {
                // A partial or invalid header: frames cannot be trusted until SQLite writes a whole one.
                header = nil
                frames.removeAll(keepingCapacity: true)
            }
        }
        guard let header, end > Int64(WALHeader.size) else { return nil }

        let frameSize = Int64(WALFrameHeader.size + header.pageSize)
        let start = max(offset, Int64(WALHeader.size))
        let first = Int((start - Int64(WALHeader.size)) / frameSize) + 1
        let last = Int((end - 1 - Int64(WALHeader.size)) / frameSize) + 1
        var completed: Int?
        for index in first...last {
            let frameStart = header.frameOffset(index)
            let dataStart = frameStart + Int64(WALFrameHeader.size)
            let dataEnd = frameStart + frameSize
            if offset <= frameStart && end >= dataStart {
                let frameHeader = WALFrameHeader(UnsafeRawBufferPointer(rebasing: buffer[Int(frameStart - offset)...]))
                // A header write always starts the frame afresh: a rolled-back
                // transaction's leftovers at this index, or an earlier version of
                // a frame SQLite rewrites in place, must not count as written.
                if frameHeader.salt1 == header.salt1 && frameHeader.salt2 == header.salt2 && index > lastCommit {
                    frames[index] = Frame(pageNumber: PageNumber(frameHeader.pageNumber), commitSize: frameHeader.commitSize, dataBytes: 0, dataWritten: false)
                } else {
                    frames[index] = nil
                }
            }
            if end > dataStart && offset < dataEnd, var frame = frames[index] {
                frame.dataBytes += Int(min(end, dataEnd) - max(offset, dataStart))
                frame.dataWritten = frame.dataBytes >= header.pageSize
                frames[index] = frame
            }
            if completed == nil, index > lastCommit, let frame = frames[index], frame.dataWritten, frame.commitSize != 0 {
                completed = index
            }
        }
        guard let completed, let commitFrame = frames[completed] else { return nil }
        // The transaction is the run of frames after the last commit. If some
        // are unknown (tracking began mid-transaction), report the known tail
        // and let the owner read the rest from the file.
        var firstKnown = completed
        while firstKnown - 1 > lastCommit, let frame = frames[firstKnown - 1], frame.dataWritten {
            firstKnown -= 1
        }
        var pages: [PageNumber] = []
        pages.reserveCapacity(completed - firstKnown + 1)
        for index in firstKnown...completed { pages.append(frames[index]!.pageNumber) }
        return Commit(
            frames: firstKnown...completed, commitSize: commitFrame.commitSize, pageNumbers: pages,
            pageSize: header.pageSize, salt1: header.salt1, salt2: header.salt2, isComplete: firstKnown == lastCommit + 1)
    }

    /// Whether a write has the shape of SQLite's own writes to a WAL: the
    /// 32-byte header at offset 0, or (part of) one frame's header, (part
    /// of) one frame's page, or one whole frame (page size from the header,
    /// or `pageSize` while no header is known). A write across those
    /// boundaries (4096-byte pieces of a copy, a whole file at once) comes
    /// from another program.
    func isSQLiteShaped(offset: Int64, count: Int, pageSize fallback: Int) -> Bool {
        if offset < Int64(WALHeader.size) { return offset == 0 && count == WALHeader.size }
        let pageSize = Int64(header?.pageSize ?? fallback)
        guard pageSize > 0, count > 0 else { return false }
        let frameSize = Int64(WALFrameHeader.size) + pageSize
        let start = offset - Int64(WALHeader.size)
        let end = start + Int64(count)
        let frameStart = start / frameSize * frameSize
        let dataStart = frameStart + Int64(WALFrameHeader.size)
        guard end <= frameStart + frameSize else { return false }
        return end <= dataStart || start >= dataStart || (start == frameStart && end == frameStart + frameSize)
    }

    /// Takes the committed part of a WAL read from the file (another program
    /// wrote it) as what is known and logged: SQLite's next frames follow it.
    mutating func adopt(_ committed: WALScanner.Committed) {
        header = committed.header
        lastCommit = committed.lastCommit
        frames.removeAll(keepingCapacity: true)
        committedPages = committed.pages
    }

    /// Marks `commit` as logged: its frames are now part of the database.
    /// Replaces the committed-page map (after a commit whose earlier frames
    /// were unknown, from a scan of the WAL file).
    mutating func setCommittedPages(_ pages: [PageNumber: Int]) {
        committedPages = pages
    }

    mutating func didCommit(_ commit: Commit) {
        lastCommit = commit.frames.upperBound
        frames.removeAll(keepingCapacity: true)
        for (offset, pgno) in commit.pageNumbers.enumerated() {
            committedPages[pgno] = commit.frames.lowerBound + offset
        }
    }
}
