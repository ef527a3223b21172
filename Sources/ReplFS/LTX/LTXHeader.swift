/// The fixed 100-byte header that opens every LTX file.
///
/// It says which transactions the file covers, how big the database is after
/// applying it and what the database checksum must be before applying it, so a
/// replica can decide whether the file applies to its current state without
/// reading any pages. All integers are big-endian on disk.
///
/// Layout: magic "LTX1" (0), flags (4), page size (8), commit (12),
/// min TXID (16), max TXID (24), timestamp (32), pre-apply checksum (40),
/// WAL offset (48), WAL size (56), WAL salt 1 (64), WAL salt 2 (68),
/// node ID (72), 20 reserved zero bytes (80).
public struct LTXHeader: Hashable, Sendable {
    /// Header flag bits.
    public struct Flags: OptionSet, Hashable, Sendable {
        /// The raw on-disk bits; unknown bits are kept so `validate()` can
        /// report them.
        public var rawValue: UInt32

        /// Wraps raw bits.
        public init(rawValue: UInt32) {
            self.rawValue = rawValue
        }

        /// Database checksums are not tracked: pre- and post-apply checksums
        /// are zero. The file checksum is still required.
        public static let noChecksum = Flags(rawValue: 1 << 1)

        /// Every bit the format defines; anything else is invalid.
        public static let all: Flags = [.noChecksum]
    }

    /// The size of the encoded header.
    public static let size = 100

    /// The four magic bytes, "LTX1". Format versions 2 and 3 share it; this
    /// code reads and writes version 3 only.
    public static let magic: [UInt8] = Array("LTX1".utf8)

    /// The smallest and largest SQLite page sizes.
    public static let pageSizeRange = 512...65536

    /// Header flags.
    public var flags: Flags
    /// The database page size in bytes: a power of two in 512...65536.
    public var pageSize: UInt32
    /// The database size in pages after applying this file. Zero means the
    /// database was deleted.
    public var commit: UInt32
    /// The first transaction in the file; 1 makes the file a snapshot.
    public var minTXID: TXID
    /// The last transaction in the file.
    public var maxTXID: TXID
    /// Creation time in milliseconds since the Unix epoch; informational.
    public var timestamp: Int64
    /// The database checksum the file expects to be applied on top of: zero
    /// for snapshots and `noChecksum` files, a flagged checksum otherwise.
    public var preApplyChecksum: Checksum
    /// Offset of the source frames in the WAL, or zero if not from a WAL.
    public var walOffset: Int64
    /// Size of the source WAL segment, or zero.
    public var walSize: Int64
    /// First WAL header salt, or zero.
    public var walSalt1: UInt32
    /// Second WAL header salt, or zero.
    public var walSalt2: UInt32
    /// Identifier of the node that wrote the file, or zero if unset.
    public var nodeID: UInt64

    /// Creates a header. Only the fields every file needs are required; the
    /// WAL fields stay zero for files that were not produced from a WAL.
    public init(
        flags: Flags = [],
        pageSize: UInt32,
        commit: UInt32,
        minTXID: TXID,
        maxTXID: TXID,
        timestamp: Int64 = 0,
        preApplyChecksum: Checksum = .zero,
        walOffset: Int64 = 0,
        walSize: Int64 = 0,
        walSalt1: UInt32 = 0,
        walSalt2: UInt32 = 0,
        nodeID: UInt64 = 0
    ) {
        self.flags = flags
        self.pageSize = pageSize
        self.commit = commit
        self.minTXID = minTXID
        self.maxTXID = maxTXID
        self.timestamp = timestamp
        self.preApplyChecksum = preApplyChecksum
        self.walOffset = walOffset
        self.walSize = walSize
        self.walSalt1 = walSalt1
        self.walSalt2 = walSalt2
        self.nodeID = nodeID
    }

    /// Decodes the first 100 bytes of `bytes`. Checks only the magic and the
    /// length; call `validate()` for the semantic rules, so callers can still
    /// inspect a header that breaks them.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(LTXError) {
        guard bytes.count >= LTXHeader.size else {
            throw .truncated(offset: bytes.count, expected: "\(LTXHeader.size)-byte header")
        }
        guard bytes.prefix(4).elementsEqual(LTXHeader.magic) else {
            let found = bytes.prefix(4).map { HexFormat.twoDigits($0) }.joined()
            throw .invalidHeader(reason: "bad magic 0x\(found), expected \"LTX1\" (0x4c545831)")
        }
        flags = Flags(rawValue: BigEndian.load(UInt32.self, from: bytes, at: 4))
        pageSize = BigEndian.load(UInt32.self, from: bytes, at: 8)
        commit = BigEndian.load(UInt32.self, from: bytes, at: 12)
        minTXID = TXID(BigEndian.load(UInt64.self, from: bytes, at: 16))
        maxTXID = TXID(BigEndian.load(UInt64.self, from: bytes, at: 24))
        timestamp = BigEndian.load(Int64.self, from: bytes, at: 32)
        preApplyChecksum = Checksum(BigEndian.load(UInt64.self, from: bytes, at: 40))
        walOffset = BigEndian.load(Int64.self, from: bytes, at: 48)
        walSize = BigEndian.load(Int64.self, from: bytes, at: 56)
        walSalt1 = BigEndian.load(UInt32.self, from: bytes, at: 64)
        walSalt2 = BigEndian.load(UInt32.self, from: bytes, at: 68)
        nodeID = BigEndian.load(UInt64.self, from: bytes, at: 72)
    }

    /// Whether the file holds a complete database image (it starts at TXID 1),
    /// in which case it must contain every page and has no pre-apply checksum.
    public var isSnapshot: Bool { minTXID.rawValue == 1 }

    /// Whether database checksums are tracked for this file.
    public var tracksChecksums: Bool { !flags.contains(.noChecksum) }

    /// The page SQLite reserves for locking at this page size.
    public var lockPage: PageNumber { PageNumber.lockPage(pageSize: Int(pageSize)) }

    /// The header as its 100 on-disk bytes (reserved bytes zero).
    public func encode() -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(LTXHeader.size)
        encode(into: &bytes)
        return bytes
    }

    /// Appends the 100 on-disk bytes to `bytes`, for encoders that build a
    /// file in one buffer.
    public func encode(into bytes: inout [UInt8]) {
        bytes.append(contentsOf: LTXHeader.magic)
        BigEndian.append(flags.rawValue, to: &bytes)
        BigEndian.append(pageSize, to: &bytes)
        BigEndian.append(commit, to: &bytes)
        BigEndian.append(minTXID.rawValue, to: &bytes)
        BigEndian.append(maxTXID.rawValue, to: &bytes)
        BigEndian.append(timestamp, to: &bytes)
        BigEndian.append(preApplyChecksum.rawValue, to: &bytes)
        BigEndian.append(walOffset, to: &bytes)
        BigEndian.append(walSize, to: &bytes)
        BigEndian.append(walSalt1, to: &bytes)
        BigEndian.append(walSalt2, to: &bytes)
        BigEndian.append(nodeID, to: &bytes)
        bytes.append(contentsOf: repeatElement(0, count: 20))
    }

    /// Checks the format rules of upstream `Header.Validate`, so files we
    /// write are accepted by the Go tools and files we accept could have been
    /// written by them.
    public func validate() throws(LTXError) {
        if !LTXHeader.Flags.all.isSuperset(of: flags) {
            throw .invalidHeader(reason: "invalid flags 0x\(String(flags.rawValue, radix: 16))")
        }
        if !LTXHeader.pageSizeRange.contains(Int(pageSize)) || pageSize.nonzeroBitCount != 1 {
            throw .invalidHeader(reason: "invalid page size \(pageSize), must be a power of two in 512...65536")
        }
        if minTXID.rawValue == 0 {
            throw .invalidHeader(reason: "minimum TXID must be non-zero")
        }
        if maxTXID.rawValue == 0 {
            throw .invalidHeader(reason: "maximum TXID must be non-zero")
        }
        if minTXID > maxTXID {
            throw .invalidHeader(reason: "TXIDs out of order: min \(minTXID) > max \(maxTXID)")
        }
        if walOffset < 0 {
            throw .invalidHeader(reason: "negative WAL offset \(walOffset)")
        }
        if walSize < 0 {
            throw .invalidHeader(reason: "negative WAL size \(walSize)")
        }
        if (walSalt1 != 0 || walSalt2 != 0) && walOffset == 0 {
            throw .invalidHeader(reason: "WAL salt set without a WAL offset")
        }
        if walOffset == 0 && walSize != 0 {
            throw .invalidHeader(reason: "WAL size set without a WAL offset")
        }
        if isSnapshot {
            if preApplyChecksum != .zero {
                throw .invalidHeader(reason: "snapshot must have a zero pre-apply checksum, found \(preApplyChecksum)")
            }
        } else if !tracksChecksums {
            if preApplyChecksum != .zero {
                throw .invalidHeader(reason: "pre-apply checksum \(preApplyChecksum) not allowed with the noChecksum flag")
            }
        } else {
            if preApplyChecksum == .zero {
                throw .invalidHeader(reason: "non-snapshot file requires a pre-apply checksum")
            }
            if !preApplyChecksum.hasFlag {
                throw .invalidHeader(reason: "pre-apply checksum \(preApplyChecksum) lacks the flag bit")
            }
        }
    }
}
