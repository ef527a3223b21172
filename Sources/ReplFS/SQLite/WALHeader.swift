/// SQLite's 32-byte WAL file header.
///
/// See <https://www.sqlite.org/fileformat2.html#walformat>. A new header
/// (with new salts) is written at offset 0 each time SQLite restarts the WAL
/// after a checkpoint; frames whose salts differ from the header's are stale
/// and never part of the database.
public struct WALHeader: Sendable, Equatable {
    public static let size = 32
    /// Magic with little-endian (…82) or big-endian (…83) frame checksums.
    public static let magicLittleEndian: UInt32 = 0x377F_0682
    public static let magicBigEndian: UInt32 = 0x377F_0683
    /// The file format version (WAL_MAX_VERSION).
    public static let formatVersion: UInt32 = 3_007_000

    public var magic: UInt32
    public var version: UInt32
    public var pageSize: Int
    public var checkpointSequence: UInt32
    public var salt1: UInt32
    public var salt2: UInt32
    public var checksum1: UInt32
    public var checksum2: UInt32

    /// Whether frame checksums are computed over big-endian words.
    public var bigEndianChecksums: Bool { magic == WALHeader.magicBigEndian }

    /// Parses a header; `nil` if the magic or page size is wrong.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= WALHeader.size else { return nil }
        magic = BigEndian.load(UInt32.self, from: bytes, at: 0)
        guard magic == WALHeader.magicLittleEndian || magic == WALHeader.magicBigEndian else { return nil }
        version = BigEndian.load(UInt32.self, from: bytes, at: 4)
        let size = Int(BigEndian.load(UInt32.self, from: bytes, at: 8))
        let pageSize = size == 1 ? 65536 : size
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else { return nil }
        self.pageSize = pageSize
        checkpointSequence = BigEndian.load(UInt32.self, from: bytes, at: 12)
        salt1 = BigEndian.load(UInt32.self, from: bytes, at: 16)
        salt2 = BigEndian.load(UInt32.self, from: bytes, at: 20)
        checksum1 = BigEndian.load(UInt32.self, from: bytes, at: 24)
        checksum2 = BigEndian.load(UInt32.self, from: bytes, at: 28)
    }

    /// Byte offset of frame `index` (1-based) in the WAL file.
    public func frameOffset(_ index: Int) -> Int64 {
        Int64(WALHeader.size) + Int64(index - 1) * Int64(WALFrameHeader.size + pageSize)
    }
}

/// The 24-byte header in front of every page in the WAL.
public struct WALFrameHeader: Sendable, Equatable {
    public static let size = 24

    /// The database page this frame holds.
    public var pageNumber: UInt32
    /// For a commit frame, the database size in pages after the commit; 0 otherwise.
    public var commitSize: UInt32
    public var salt1: UInt32
    public var salt2: UInt32
    public var checksum1: UInt32
    public var checksum2: UInt32

    /// Whether this frame ends a transaction.
    public var isCommit: Bool { commitSize != 0 }

    public init(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= WALFrameHeader.size)
        pageNumber = BigEndian.load(UInt32.self, from: bytes, at: 0)
        commitSize = BigEndian.load(UInt32.self, from: bytes, at: 4)
        salt1 = BigEndian.load(UInt32.self, from: bytes, at: 8)
        salt2 = BigEndian.load(UInt32.self, from: bytes, at: 12)
        checksum1 = BigEndian.load(UInt32.self, from: bytes, at: 16)
        checksum2 = BigEndian.load(UInt32.self, from: bytes, at: 20)
    }
}
