/// The fields of SQLite's 100-byte database header that ReplFS relies on.
///
/// See <https://www.sqlite.org/fileformat2.html#the_database_header>. The
/// header is the first 100 bytes of page 1; it tells a database from a plain
/// file, gives the page size, and (when valid) the database size in pages,
/// which is how ReplFS learns the size a rollback-journal commit leaves.
public struct DatabaseHeader: Sendable, Equatable {
    /// "SQLite format 3\0".
    public static let magic: [UInt8] = Array("SQLite format 3".utf8) + [0]
    public static let size = 100

    /// Page size in bytes (the stored value 1 means 65536).
    public var pageSize: Int
    /// File format write version: 1 legacy (rollback journal), 2 WAL.
    public var writeVersion: UInt8
    /// File format read version: 1 legacy, 2 WAL.
    public var readVersion: UInt8
    /// File change counter (offset 24).
    public var changeCounter: UInt32
    /// "In-header database size" in pages (offset 28).
    public var pageCountInHeader: UInt32
    /// "Version-valid-for" number (offset 92).
    public var versionValidFor: UInt32

    /// Whether the database is in WAL mode (both versions are 2).
    public var isWAL: Bool { writeVersion == 2 && readVersion == 2 }

    /// The in-header size is valid only when it is non-zero and the
    /// version-valid-for number equals the change counter (fileformat2 §1.3.7).
    public var hasValidPageCount: Bool { pageCountInHeader > 0 && versionValidFor == changeCounter }

    /// Whether `bytes` start with the SQLite magic string.
    public static func hasMagic(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= magic.count else { return false }
        for i in 0..<magic.count where bytes[i] != magic[i] { return false }
        return true
    }

    /// Parses the header; `nil` if the bytes are not a SQLite database header.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= DatabaseHeader.size, DatabaseHeader.hasMagic(bytes) else { return nil }
        let raw = Int(BigEndian.load(UInt16.self, from: bytes, at: 16))
        let size = raw == 1 ? 65536 : raw
        guard size >= 512, size <= 65536, size & (size - 1) == 0 else { return nil }
        pageSize = size
        writeVersion = bytes[18]
        readVersion = bytes[19]
        changeCounter = BigEndian.load(UInt32.self, from: bytes, at: 24)
        pageCountInHeader = BigEndian.load(UInt32.self, from: bytes, at: 28)
        versionValidFor = BigEndian.load(UInt32.self, from: bytes, at: 92)
    }
}
