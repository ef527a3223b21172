import Testing

@testable import ReplFS

@Suite("SQLite file formats")
struct SQLiteFormatTests {
    static func databaseHeader(pageSize: UInt16, wal: Bool, changeCounter: UInt32, pages: UInt32, validFor: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 100)
        bytes.replaceSubrange(0..<16, with: Array("SQLite format 3".utf8) + [0])
        bytes[16] = UInt8(pageSize >> 8)
        bytes[17] = UInt8(pageSize & 0xFF)
        bytes[18] = wal ? 2 : 1
        bytes[19] = wal ? 2 : 1
        bytes.withUnsafeMutableBytes { raw in
            BigEndian.store(changeCounter, into: raw, at: 24)
            BigEndian.store(pages, into: raw, at: 28)
            BigEndian.store(validFor, into: raw, at: 92)
        }
        return bytes
    }

    @Test("database header: page size (1 means 65536), WAL flag, in-header size only when valid")
    func databaseHeader() throws {
        let header = try #require(Self.databaseHeader(pageSize: 4096, wal: true, changeCounter: 7, pages: 12, validFor: 7).withUnsafeBytes { DatabaseHeader($0) })
        #expect(header.pageSize == 4096)
        #expect(header.isWAL)
        #expect(header.hasValidPageCount)
        #expect(header.pageCountInHeader == 12)
        let big = try #require(Self.databaseHeader(pageSize: 1, wal: false, changeCounter: 7, pages: 12, validFor: 6).withUnsafeBytes { DatabaseHeader($0) })
        #expect(big.pageSize == 65536)
        #expect(!big.isWAL)
        #expect(!big.hasValidPageCount, "version-valid-for differs from the change counter")
        var notDatabase = Self.databaseHeader(pageSize: 4096, wal: false, changeCounter: 1, pages: 1, validFor: 1)
        notDatabase[0] = UInt8(ascii: "X")
        #expect(notDatabase.withUnsafeBytes { DatabaseHeader($0) } == nil)
        let badSize = Self.databaseHeader(pageSize: 1000, wal: false, changeCounter: 1, pages: 1, validFor: 1)
        #expect(badSize.withUnsafeBytes { DatabaseHeader($0) } == nil)
    }

    @Test("journal magic d9d505f920a163d7 marks a live journal; zeros do not")
    func journalMagic() {
        let live: [UInt8] = [0xD9, 0xD5, 0x05, 0xF9, 0x20, 0xA1, 0x63, 0xD7, 0, 0, 0, 1]
        #expect(live.withUnsafeBytes { JournalHeader.hasMagic($0) })
        #expect(![UInt8](repeating: 0, count: 28).withUnsafeBytes { JournalHeader.hasMagic($0) })
        #expect(!Array(live.prefix(7)).withUnsafeBytes { JournalHeader.hasMagic($0) })
    }

    @Test("WAL header and frame header fields")
    func walHeaders() throws {
        let bytes = WALTrackerTests.walHeader(salt1: 5, salt2: 6)
        let header = try #require(bytes.withUnsafeBytes { WALHeader($0) })
        #expect(header.pageSize == 1024)
        #expect(header.salt1 == 5 && header.salt2 == 6)
        #expect(header.frameOffset(1) == 32)
        #expect(header.frameOffset(3) == 32 + 2 * (24 + 1024))
        let frame = WALTrackerTests.frameHeader(pgno: 9, commit: 10).withUnsafeBytes { WALFrameHeader($0) }
        #expect(frame.pageNumber == 9 && frame.commitSize == 10 && frame.isCommit)
        var badMagic = bytes
        badMagic[3] = 0
        #expect(badMagic.withUnsafeBytes { WALHeader($0) } == nil)
    }

    @Test("file roles by name")
    func roles() {
        #expect(SQLiteFileRole.classify("db.sqlite") == .main)
        #expect(SQLiteFileRole.classify("db.sqlite-journal") == .journal(database: "db.sqlite"))
        #expect(SQLiteFileRole.classify("sub/x.db-wal") == .wal(database: "sub/x.db"))
        #expect(SQLiteFileRole.classify("x.db-shm") == .sharedMemory(database: "x.db"))
        #expect(SQLiteFileRole.classify("-wal") == .main)
    }

    @Test("dirty byte ranges become the pages they touch, at the commit's page size")
    func dirtyRanges() {
        var ranges = DirtyRanges()
        ranges.insert(offset: 0, count: 4096)
        ranges.insert(offset: 4096, count: 4096)
        ranges.insert(offset: 40960, count: 10)
        ranges.insert(offset: 8191, count: 2)
        #expect(ranges.pageNumbers(pageSize: 4096).map(\.rawValue) == [1, 2, 3, 11])
        #expect(ranges.pageNumbers(pageSize: 8192).map(\.rawValue) == [1, 2, 6])
        ranges.removeAll()
        #expect(ranges.isEmpty)
    }

    @Test("database keys escape / and % reversibly")
    func databaseKeys() {
        for path in ["db.sqlite", "sub/dir/app.db", "100%/x.db"] {
            #expect(DatabaseKey.unescape(DatabaseKey.escape(path)) == path)
            #expect(!DatabaseKey.escape(path).contains("/"))
        }
        #expect(DatabaseKey.escape("sub/app.db") == "sub%2Fapp.db")
    }

    @Test("positions print and parse as TXID/CHECKSUM")
    func positions() {
        let position = Position(txid: TXID(0x2a), checksum: Checksum(0x8000_0000_0000_00ff))
        #expect(position.description == "000000000000002a/80000000000000ff")
        #expect(Position(parsing: position.description) == position)
        #expect(Position(parsing: "2a/ff") == nil)
    }
}
