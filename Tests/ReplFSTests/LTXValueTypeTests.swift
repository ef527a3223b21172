import Testing

@testable import ReplFS

@Suite("LTX value types")
struct LTXValueTypeTests {
    @Test("TXID formatting and ordering")
    func txid() {
        #expect(TXID(1).description == "0000000000000001")
        #expect(TXID(0xABCDEF).description == "0000000000abcdef")
        #expect(TXID(UInt64.max).description == "ffffffffffffffff")
        #expect(TXID(41).next == TXID(42))
        #expect(TXID(1) < TXID(2))
    }

    @Test("lock page numbers")
    func lockPage() {
        #expect(PageNumber.lockPage(pageSize: 4096) == PageNumber(262_145))
        #expect(PageNumber.lockPage(pageSize: 512) == PageNumber(2_097_153))
        #expect(PageNumber.lockPage(pageSize: 65536) == PageNumber(16385))
        #expect(PageNumber(3).fileOffset(pageSize: 4096) == 8192)
    }

    @Test("file names format and parse")
    func fileNames() throws {
        let name = LTXFileName(minTXID: TXID(1), maxTXID: TXID(0x1F))
        #expect(name.description == "0000000000000001-000000000000001f.ltx")
        #expect(try LTXFileName(parsing: name.description) == name)
        for bad in ["", "0000000000000001-000000000000001f.ltx.tmp", "0000000000000001-000000000000001F.ltx",
                    "000000000000001-0000000000000001f.ltx", "0000000000000001_000000000000001f.ltx",
                    "000000000000000g-000000000000001f.ltx", "0000000000000001-000000000000001f.LTX"] {
            LTXFixture.expectError("not of the form") { _ = try LTXFileName(parsing: bad) }
        }
    }

    @Test("header encodes to 100 bytes and decodes back")
    func headerRoundTrip() throws {
        let header = LTXHeader(
            flags: [], pageSize: 4096, commit: 77, minTXID: TXID(5), maxTXID: TXID(9),
            timestamp: -12345, preApplyChecksum: Checksum(0x8000_0000_DEAD_BEEF), walOffset: 32,
            walSize: 4128, walSalt1: 0x1234_5678, walSalt2: 0x9ABC_DEF0, nodeID: 0xFEED)
        let bytes = header.encode()
        #expect(bytes.count == 100)
        #expect(Array(bytes[0..<4]) == Array("LTX1".utf8))
        #expect(bytes[80...].allSatisfy { $0 == 0 })
        #expect(Array(bytes[8..<12]) == [0, 0, 0x10, 0])
        let decoded = try bytes.withUnsafeBytes { try LTXHeader(decoding: $0) }
        #expect(decoded == header)
        try decoded.validate()
    }

    @Test("trailer and page header encodings")
    func smallRecords() throws {
        let trailer = LTXTrailer(postApplyChecksum: Checksum(0x8000_0000_0000_0001), fileChecksum: Checksum(0x8123_4567_89AB_CDEF))
        let bytes = trailer.encode()
        #expect(bytes == [0x80, 0, 0, 0, 0, 0, 0, 1, 0x81, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])
        #expect(try bytes.withUnsafeBytes { try LTXTrailer(decoding: $0) } == trailer)

        var encoded: [UInt8] = []
        LTXPageHeader(pgno: PageNumber(0x0102_0304)).encode(into: &encoded)
        #expect(encoded == [1, 2, 3, 4, 0, 1])
        #expect(LTXPageHeader.terminator.isTerminator)
    }
}
