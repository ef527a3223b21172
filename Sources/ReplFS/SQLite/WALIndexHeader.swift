/// The header of SQLite's WAL-index (the first 136 bytes of `-shm`), as a
/// replica rewrites it after changing the database file underneath readers.
///
/// See `wal.c` (`WalIndexHdr`, `WalCkptInfo`, `walIndexWriteHdr`): two
/// copies of a 48-byte header (native byte order, with a checksum over the
/// first 40 bytes), then the checkpoint information. A reader that finds the
/// header changed (`iChange`) drops its page cache; `mxFrame == 0` with
/// `nBackfill == 0` tells it to read every page from the database file, which
/// is where a replica writes. Only the fields ReplFS changes are modelled.
public struct WALIndexHeader: Sendable, Equatable {
    public static let size = 136
    /// WALINDEX_MAX_VERSION.
    public static let version: UInt32 = 3_007_000
    /// READMARK_NOT_USED.
    static let readMarkNotUsed: UInt32 = 0xFFFF_FFFF

    public var change: UInt32
    public var isInitialized: Bool
    public var bigEndianChecksums: Bool
    public var pageSize: Int
    public var maxFrame: UInt32
    public var pageCount: UInt32
    public var frameChecksum: (UInt32, UInt32)
    public var salt: (UInt32, UInt32)

    public static func == (lhs: WALIndexHeader, rhs: WALIndexHeader) -> Bool {
        lhs.change == rhs.change && lhs.isInitialized == rhs.isInitialized && lhs.bigEndianChecksums == rhs.bigEndianChecksums
            && lhs.pageSize == rhs.pageSize && lhs.maxFrame == rhs.maxFrame && lhs.pageCount == rhs.pageCount
            && lhs.frameChecksum == rhs.frameChecksum && lhs.salt == rhs.salt
    }

    /// Reads the first copy; nil if it is not initialized or its checksum is wrong.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 48 else { return nil }
        func word(_ offset: Int) -> UInt32 { bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        guard word(0) == WALIndexHeader.version, bytes[12] == 1 else { return nil }
        let (c1, c2) = WALIndexHeader.checksum(bytes)
        guard c1 == word(40), c2 == word(44) else { return nil }
        change = word(8)
        isInitialized = true
        bigEndianChecksums = bytes[13] != 0
        let rawPageSize = Int(bytes.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
        pageSize = (rawPageSize & 0xFF00) | ((rawPageSize & 0x0001) << 16)
        maxFrame = word(16)
        pageCount = word(20)
        frameChecksum = (word(24), word(28))
        salt = (word(32), word(36))
    }

    /// SQLite's WAL checksum over the first 40 bytes, words in native order.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> (UInt32, UInt32) {
        var s1: UInt32 = 0
        var s2: UInt32 = 0
        var offset = 0
        while offset < 40 {
            s1 = s1 &+ bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self) &+ s2
            s2 = s2 &+ bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self) &+ s1
            offset += 8
        }
        return (s1, s2)
    }

    /// The header after the database file changed underneath: a new change
    /// counter, an empty WAL, the new size.
    public func afterDatabaseChange(pageSize: Int, pageCount: UInt32) -> WALIndexHeader {
        var next = self
        next.change = change &+ 1
        next.maxFrame = 0
        next.pageSize = pageSize
        next.pageCount = pageCount
        return next
    }

    /// The 136 bytes to write at offset 0 of `-shm` (both header copies and
    /// a checkpoint record saying nothing in the WAL is needed). Write the
    /// second copy before the first, as SQLite does, so a reader racing the
    /// write sees them differ and retries.
    public func encoded() -> [UInt8] {
        let header = encodedHeader()
        var checkpoint = [UInt8](repeating: 0, count: 40)
        checkpoint.withUnsafeMutableBytes { raw in
            // nBackfill = 0, aReadMark[0] = 0, aReadMark[1...4] unused,
            // aLock[8] untouched (they are lock bytes), nBackfillAttempted = 0.
            for mark in 1...4 { raw.storeBytes(of: WALIndexHeader.readMarkNotUsed, toByteOffset: 4 + 4 * mark, as: UInt32.self) }
        }
        return header + header + checkpoint
    }

    /// One 48-byte copy of the header, with its checksum.
    func encodedHeader() -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 48)
        header.withUnsafeMutableBytes { raw in
            func put(_ value: UInt32, _ offset: Int) { raw.storeBytes(of: value, toByteOffset: offset, as: UInt32.self) }
            put(WALIndexHeader.version, 0)
            put(change, 8)
            raw[12] = 1
            raw[13] = bigEndianChecksums ? 1 : 0
            raw.storeBytes(of: UInt16(truncatingIfNeeded: (pageSize & 0xFF00) | (pageSize >> 16)), toByteOffset: 14, as: UInt16.self)
            put(maxFrame, 16)
            put(pageCount, 20)
            put(frameChecksum.0, 24)
            put(frameChecksum.1, 28)
            put(salt.0, 32)
            put(salt.1, 36)
            let (c1, c2) = WALIndexHeader.checksum(UnsafeRawBufferPointer(raw))
            put(c1, 40)
            put(c2, 44)
        }
        return header
    }
}
