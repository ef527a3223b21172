#if canImport(Glibc)
import Glibc
#endif

/// Appends one transaction to a WAL database's `-wal` and publishes it
/// through the wal-index (`-shm`), as SQLite's own writer does, so that a
/// reader in a transaction keeps its snapshot while a replica applies.
///
/// What it writes follows `wal.c` (`walFrames`, `walIndexAppend`,
/// `walIndexWriteHdr`) and <https://www.sqlite.org/walformat.html>:
///
/// - frames after `mxFrame` (or a new WAL header first, when the index says
///   the WAL is empty), each with the running checksum and the header's
///   salts, the last one marked with the database size;
/// - for each frame, its page number in the index's page array and its
///   slot in the hash table of its 32 KiB block (`(pgno * 383) & 8191`,
///   then linear probing);
/// - then both copies of the index header, the second first, with
///   `mxFrame`, the size, the last frame's checksum and a new change
///   counter. A reader whose snapshot ends at an earlier `mxFrame` never
///   looks past it; the next transaction it starts sees the new frames.
///
/// All of it under the WAL's WRITE lock (byte 120 of `-shm`), which no
/// reader takes. The caller keeps the ``WALTracker`` in step (it is fed the
/// bytes written, as if it had observed SQLite writing them).
struct WALIndexAppender {
    /// The database's `-wal`, written directly (in `DATA/files`).
    var wal: Int32
    /// The database's `-shm` opened through the mount, so that readers'
    /// mappings see every byte written.
    var sharedMemory: Int32

    static let blockSize = 32_768
    /// Page-number entries of a block; the first block loses 136 bytes to the header.
    static let entriesPerBlock = 4096
    static let entriesInFirstBlock = 4096 - WALIndexHeader.size / 4
    static let hashSlots = 8192

    /// What was appended: the WAL bytes written and where (for the tracker
    /// and the kernel's cache of `-wal`).
    struct Appended {
        var writes: [(offset: Int64, bytes: [UInt8])]
        var maxFrame: UInt32
    }

    enum Failure: Error, Equatable {
        /// The WRITE lock is held (another writer: not expected on a replica).
        case busy
        /// The index is not initialized, its copies differ, or it does not
        /// describe a WAL this writer can continue (another page size, a
        /// WAL header that does not match it).
        case unusableIndex
        case io(Errno)
    }

    /// Appends `pages` (page number and content, each `pageSize` bytes) as
    /// one transaction after which the database has `commitSize` pages.
    /// `expectedFrames` is what the caller knows the WAL to hold (its
    /// tracker's last commit): a different `mxFrame` means the index and
    /// this node disagree, and nothing is written.
    ///
    /// `walWritten` is called with the byte ranges of `-wal` written, before
    /// the index makes them visible: the kernel's cache of the file (its
    /// size, its pages) must be dropped by then, or a reader that sees the
    /// new header reads a short or stale frame.
    func append(
        pages: [(PageNumber, [UInt8])], commitSize: UInt32, pageSize: Int, expectedFrames: Int, walWritten: ([Range<Int64>]) -> Void = { _ in }
    ) -> Result<Appended, Failure> {
        precondition(!pages.isEmpty)
        // A connection of SQLite's that opens and finds no other holding the
        // "dead man switch" shared takes it exclusively and wipes the index
        // to rebuild it from the WAL: midway through this append, it would
        // keep a header without the hash entries before it. Hold it shared,
        // as every SQLite connection does.
        guard lock(F_RDLCK, LockBytes.walDMS) else { return .failure(.busy) }
        defer { unlock(LockBytes.walDMS) }
        guard lock(F_WRLCK, LockBytes.walWrite) else { return .failure(.busy) }
        defer { unlock(LockBytes.walWrite) }
        var indexHeader = [UInt8](repeating: 0, count: 96)
        guard case .success(96) = indexHeader.withUnsafeMutableBytes({ Syscall.pread(sharedMemory, into: $0, at: 0) }) else {
            return .failure(.unusableIndex)
        }
        guard indexHeader[0..<48] == indexHeader[48..<96], let header = indexHeader.withUnsafeBytes({ WALIndexHeader($0) }), !header.bigEndianChecksums
        else { return .failure(.unusableIndex) }
        guard Int(header.maxFrame) == expectedFrames else { return .failure(.unusableIndex) }

        var writes: [(offset: Int64, bytes: [UInt8])] = []
        var walHeader: [UInt8]
        var sum: (UInt32, UInt32)
        if header.maxFrame == 0 {
            // A new generation of the WAL: new salts, so no frame left from
            // an earlier one can pass for part of it.
            walHeader = Self.newWALHeader(pageSize: pageSize, previous: wal)
            sum = walHeader.withUnsafeBytes { WALScanner.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<24]), bigEndian: false, from: (0, 0)) }
            walHeader.withUnsafeMutableBytes { raw in
                BigEndian.store(sum.0, into: raw, at: 24)
                BigEndian.store(sum.1, into: raw, at: 28)
            }
            writes.append((0, walHeader))
        } else {
            guard header.pageSize == pageSize else { return .failure(.unusableIndex) }
            walHeader = [UInt8](repeating: 0, count: WALHeader.size)
            guard case .success(WALHeader.size) = walHeader.withUnsafeMutableBytes({ Syscall.pread(wal, into: $0, at: 0) }),
                let parsed = walHeader.withUnsafeBytes({ WALHeader($0) }), parsed.pageSize == pageSize, !parsed.bigEndianChecksums,
                walHeader.withUnsafeBytes({ ($0.loadUnaligned(fromByteOffset: 16, as: UInt32.self), $0.loadUnaligned(fromByteOffset: 20, as: UInt32.self)) })
                    == header.salt
            else { return .failure(.unusableIndex) }
            sum = header.frameChecksum
        }

        // The frames, in one buffer.
        let frameSize = WALFrameHeader.size + pageSize
        var frames = [UInt8](repeating: 0, count: pages.count * frameSize)
        frames.withUnsafeMutableBytes { raw in
            for (index, (pgno, page)) in pages.enumerated() {
                let base = index * frameSize
                let frame = UnsafeMutableRawBufferPointer(rebasing: raw[base..<(base + frameSize)])
                BigEndian.store(pgno.rawValue, into: frame, at: 0)
                BigEndian.store(index == pages.count - 1 ? commitSize : 0, into: frame, at: 4)
                for offset in 8..<16 { frame[offset] = walHeader[offset + 8] }
                page.withUnsafeBytes { frame.baseAddress!.advanced(by: WALFrameHeader.size).copyMemory(from: $0.baseAddress!, byteCount: pageSize) }
                sum = WALScanner.checksum(UnsafeRawBufferPointer(rebasing: frame[0..<8]), bigEndian: false, from: sum)
                sum = WALScanner.checksum(UnsafeRawBufferPointer(rebasing: frame[WALFrameHeader.size...]), bigEndian: false, from: sum)
                BigEndian.store(sum.0, into: frame, at: 16)
                BigEndian.store(sum.1, into: frame, at: 20)
            }
        }
        let firstFrame = Int(header.maxFrame) + 1
        let frameOffset = Int64(WALHeader.size) + Int64(firstFrame - 1) * Int64(frameSize)
        writes.append((frameOffset, frames))
        for write in writes {
            guard case .success(write.bytes.count) = write.bytes.withUnsafeBytes({ Syscall.pwrite(wal, $0, at: write.offset) }) else {
                return .failure(.io(.current))
            }
        }

        walWritten(writes.map { $0.offset..<($0.offset + Int64($0.bytes.count)) })

        // The index: page numbers and hash slots, then the header.
        if case .failure(let error) = index(pages.map(\.0), from: firstFrame, previousMaxFrame: Int(header.maxFrame)) { return .failure(error) }
        var next = header
        next.change = header.change &+ 1
        next.pageSize = pageSize
        next.maxFrame = header.maxFrame + UInt32(pages.count)
        next.pageCount = commitSize
        next.frameChecksum = sum
        next.salt = walHeader.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 16, as: UInt32.self), $0.loadUnaligned(fromByteOffset: 20, as: UInt32.self)) }
        let encoded = next.encodedHeader()
        guard case .success(48) = encoded.withUnsafeBytes({ Syscall.pwrite(sharedMemory, $0, at: 48) }),
            case .success(48) = encoded.withUnsafeBytes({ Syscall.pwrite(sharedMemory, $0, at: 0) })
        else { return .failure(.io(.current)) }
        return .success(Appended(writes: writes, maxFrame: next.maxFrame))
    }

    /// The block (0-based) holding frame `frame` (1-based), and the frame
    /// number just before its first entry.
    static func block(of frame: Int) -> (block: Int, zero: Int) {
        let block = (frame + entriesPerBlock - entriesInFirstBlock - 1) / entriesPerBlock
        return (block, block == 0 ? 0 : entriesInFirstBlock + (block - 1) * entriesPerBlock)
    }

    /// Adds frames `first...` (their page numbers in order) to the index.
    private func index(_ pageNumbers: [PageNumber], from first: Int, previousMaxFrame: Int) -> Result<Void, Failure> {
        var frame = first
        var remaining = pageNumbers[...]
        var cleaned = false
        while !remaining.isEmpty {
            let (block, zero) = Self.block(of: frame)
            let blockStart = Int64(block * Self.blockSize)
            // The page array (after the header in block 0) and the hash table.
            let arrayStart = blockStart + (block == 0 ? Int64(WALIndexHeader.size) : 0)
            let hashStart = blockStart + Int64(Self.entriesPerBlock * 4)
            let capacity = block == 0 ? Self.entriesInFirstBlock : Self.entriesPerBlock
            var array = [UInt32](repeating: 0, count: capacity)
            var hash = [UInt16](repeating: 0, count: Self.hashSlots)
            let firstIndex = frame - zero
            if firstIndex > 1 {
                // Continue the block as it is (a short file reads as zeros).
                _ = array.withUnsafeMutableBytes { Syscall.pread(sharedMemory, into: $0, at: arrayStart) }
                _ = hash.withUnsafeMutableBytes { Syscall.pread(sharedMemory, into: $0, at: hashStart) }
                if !cleaned, array[firstIndex - 1] != 0 {
                    // Entries past mxFrame from a writer that did not finish.
                    let limit = previousMaxFrame - zero
                    for slot in 0..<Self.hashSlots where Int(hash[slot]) > limit { hash[slot] = 0 }
                    for entry in limit..<capacity { array[entry] = 0 }
                }
            }
            cleaned = true
            var index = firstIndex
            while index <= capacity, let pgno = remaining.first {
                var key = Int((pgno.rawValue &* 383) & UInt32(Self.hashSlots - 1))
                var collisions = 0
                while hash[key] != 0 {
                    key = (key + 1) & (Self.hashSlots - 1)
                    collisions += 1
                    if collisions > Self.hashSlots { return .failure(.unusableIndex) }
                }
                array[index - 1] = pgno.rawValue
                hash[key] = UInt16(index)
                remaining = remaining.dropFirst()
                index += 1
                frame += 1
            }
            // Page numbers before hash slots: a slot must never point at an
            // entry not yet written.
            guard case .success = array.withUnsafeBytes({ Syscall.pwrite(sharedMemory, $0, at: arrayStart) }),
                case .success = hash.withUnsafeBytes({ Syscall.pwrite(sharedMemory, $0, at: hashStart) })
            else { return .failure(.io(.current)) }
        }
        return .success(())
    }

    /// A WAL header for a new generation: little-endian checksums (this
    /// machine's order, as SQLite writes them here), the checkpoint
    /// sequence after the previous header's, random salts. The checksum is
    /// filled in by the caller.
    static func newWALHeader(pageSize: Int, previous wal: Int32) -> [UInt8] {
        var previous = [UInt8](repeating: 0, count: WALHeader.size)
        let sequence: UInt32
        if case .success(WALHeader.size) = previous.withUnsafeMutableBytes({ Syscall.pread(wal, into: $0, at: 0) }),
            let header = previous.withUnsafeBytes({ WALHeader($0) })
        {
            sequence = header.checkpointSequence &+ 1
        } else {
            sequence = 0
        }
        var bytes = [UInt8](repeating: 0, count: WALHeader.size)
        bytes.withUnsafeMutableBytes { raw in
            BigEndian.store(WALHeader.magicLittleEndian, into: raw, at: 0)
            BigEndian.store(WALHeader.formatVersion, into: raw, at: 4)
            BigEndian.store(UInt32(pageSize == 65536 ? 1 : pageSize), into: raw, at: 8)
            BigEndian.store(sequence, into: raw, at: 12)
            BigEndian.store(UInt32.random(in: 0...UInt32.max), into: raw, at: 16)
            BigEndian.store(UInt32.random(in: 0...UInt32.max), into: raw, at: 20)
        }
        return bytes
    }

    /// Takes a lock on one byte of `-shm`, without waiting: a connection
    /// that opens holds the DMS byte exclusively while it checks the index,
    /// and the WRITE byte while it rebuilds it; the caller retries `.busy`.
    private func lock(_ type: Int32, _ byte: Int64) -> Bool {
        Syscall.setRangeLock(sharedMemory, type, start: byte, length: 1)
    }

    private func unlock(_ byte: Int64) { _ = Syscall.setRangeLock(sharedMemory, F_UNLCK, start: byte, length: 1) }
}
