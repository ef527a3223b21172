#if canImport(Glibc)
import Glibc
#endif

/// The database checksum at each archived TXID of one database:
/// `<path>/<database>/.replfs/positions`.
///
/// Litestream's files carry no database checksums (their flags must say
/// so), so ReplFS keeps them here: `replfsd restore` compares the database
/// it rebuilt with the checksum recorded for the TXID it reached, and a new
/// primary confirms that the archive's history is its own before it
/// continues it. An entry is appended (and synced) before the archived file
/// it describes is renamed into place, so every archived end point has one.
///
/// Fixed 32-byte records: TXID, checksum, timestamp (ms), each big-endian
/// 64 bits, then the CRC-64 of those 24 bytes. A record failing its CRC is
/// skipped (the others stay usable); a record cut short by a crash in
/// mid-append is cut off by the next append.
public struct ArchivePositions: Sendable {
    public struct Entry: Hashable, Sendable {
        public var txid: TXID
        public var checksum: Checksum
        public var timestamp: Int64

        public init(txid: TXID, checksum: Checksum, timestamp: Int64) {
            self.txid = txid
            self.checksum = checksum
            self.timestamp = timestamp
        }
    }

    public static let recordSize = 32
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The entries, in file order (later entries for a TXID win: a history
    /// that replaced one moved aside is appended after it).
    public func read() -> [Entry] {
        guard case .success(let bytes) = Syscall.readFile(path) else { return [] }
        var entries: [Entry] = []
        var offset = 0
        while offset + Self.recordSize <= bytes.count {
            let record = Array(bytes[offset..<offset + Self.recordSize])
            offset += Self.recordSize
            let field = { (at: Int) in record.withUnsafeBytes { BigEndian.load(UInt64.self, from: $0, at: at) } }
            guard CRC64.checksum(Array(record[0..<24])) == field(24) else { continue }
            entries.append(Entry(txid: TXID(field(0)), checksum: Checksum(field(8)), timestamp: Int64(bitPattern: field(16))))
        }
        return entries
    }

    /// The checksums by TXID (the last entry for each wins).
    public func byTXID() -> [TXID: Checksum] {
        Dictionary(read().map { ($0.txid, $0.checksum) }, uniquingKeysWith: { _, last in last })
    }

    static func encode(_ entry: Entry) -> [UInt8] {
        var record: [UInt8] = []
        record.reserveCapacity(recordSize)
        BigEndian.append(entry.txid.rawValue, to: &record)
        BigEndian.append(entry.checksum.rawValue, to: &record)
        BigEndian.append(UInt64(bitPattern: entry.timestamp), to: &record)
        BigEndian.append(CRC64.checksum(record), to: &record)
        return record
    }

    /// Appends entries durably (`fdatasync`). A partial record at the end
    /// (a crash in mid-append) is cut off first, so that what follows
    /// stays aligned; nothing else is read.
    func append(_ entries: [Entry]) -> Result<Void, Errno> {
        guard !entries.isEmpty else { return .success(()) }
        let fd: Int32
        switch Syscall.open(at: AT_FDCWD, path, flags: O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, mode: 0o600) {
        case .success(let value): fd = value
        case .failure(let error): return .failure(error)
        }
        defer { Syscall.close(fd) }
        guard case .success(let info) = Syscall.fstat(fd) else { return .failure(.io) }
        let size = Int64(info.st_size)
        if size % Int64(Self.recordSize) != 0 {
            if case .failure(let error) = Syscall.ftruncate(fd, size - size % Int64(Self.recordSize)) { return .failure(error) }
        }
        let bytes = entries.flatMap(Self.encode)
        if case .failure(let error) = bytes.withUnsafeBytes({ Syscall.write(fd, $0) }) { return .failure(error) }
        return Syscall.fsync(fd, dataOnly: true)
    }

    /// Keeps only the entries `keep` accepts (retention), replacing the
    /// file whole.
    func rewrite(keeping keep: (Entry) -> Bool) -> Result<Void, Errno> {
        let entries = read()
        let kept = entries.filter(keep)
        guard kept.count != entries.count else { return .success(()) }
        return DurableFile.write(kept.flatMap(Self.encode), to: path, mode: 0o600, timestamp: nil)
    }
}
