import Testing

@testable import ReplFS

@Suite("LTX header validation")
struct LTXHeaderTests {
    static let valid = LTXHeader(pageSize: 4096, commit: 2, minTXID: TXID(2), maxTXID: TXID(3),
                                 preApplyChecksum: Checksum(0x8000_0000_0000_0042))

    /// `valid` with one change applied.
    static func header(_ change: (inout LTXHeader) -> Void) -> LTXHeader {
        var header = valid
        change(&header)
        return header
    }

    @Test("a valid header passes")
    func validHeader() {
        #expect(throws: Never.self) { try Self.valid.validate() }
        #expect(throws: Never.self) { try Self.header { $0.minTXID = TXID(1); $0.preApplyChecksum = .zero }.validate() }
        #expect(throws: Never.self) { try Self.header { $0.flags = .noChecksum; $0.preApplyChecksum = .zero }.validate() }
        #expect(throws: Never.self) { try Self.header { $0.walOffset = 32; $0.walSize = 4128; $0.walSalt1 = 1; $0.walSalt2 = 2 }.validate() }
    }

    @Test("bad magic is rejected when decoding")
    func badMagic() {
        var bytes = Self.valid.encode()
        bytes[3] = UInt8(ascii: "2")
        LTXFixture.expectError("bad magic 0x4c545832") { _ = try bytes.withUnsafeBytes { try LTXHeader(decoding: $0) } }
        LTXFixture.expectError("bad magic") {
            var decoder = LTXDecoder(source: LTXMemorySource(bytes))
            _ = try decoder.decodeHeader()
        }
    }

    @Test("invalid flags", arguments: [UInt32(1), 4, 0x8000_0000, 3])
    func badFlags(_ flags: UInt32) {
        LTXFixture.expectError("invalid flags") { try Self.header { $0.flags = .init(rawValue: flags) }.validate() }
    }

    @Test("invalid page sizes", arguments: [UInt32(0), 256, 1000, 4097, 131_072, 0xFFFF_FFFF])
    func badPageSize(_ size: UInt32) {
        LTXFixture.expectError("invalid page size") { try Self.header { $0.pageSize = size }.validate() }
    }

    @Test("valid page sizes", arguments: [UInt32(512), 1024, 2048, 4096, 8192, 16384, 32768, 65536])
    func goodPageSize(_ size: UInt32) {
        #expect(throws: Never.self) { try Self.header { $0.pageSize = size }.validate() }
    }

    @Test("TXID rules")
    func txids() {
        LTXFixture.expectError("minimum TXID must be non-zero") { try Self.header { $0.minTXID = TXID(0) }.validate() }
        LTXFixture.expectError("maximum TXID must be non-zero") {
            try Self.header { $0.maxTXID = TXID(0) }.validate()
        }
        LTXFixture.expectError("TXIDs out of order") { try Self.header { $0.minTXID = TXID(4) }.validate() }
    }

    @Test("checksum rules")
    func checksums() {
        LTXFixture.expectError("snapshot must have a zero pre-apply checksum") {
            try Self.header { $0.minTXID = TXID(1) }.validate()
        }
        LTXFixture.expectError("requires a pre-apply checksum") { try Self.header { $0.preApplyChecksum = .zero }.validate() }
        LTXFixture.expectError("lacks the flag bit") { try Self.header { $0.preApplyChecksum = Checksum(42) }.validate() }
        LTXFixture.expectError("not allowed with the noChecksum flag") { try Self.header { $0.flags = .noChecksum }.validate() }
    }

    @Test("WAL field rules")
    func walFields() {
        LTXFixture.expectError("negative WAL offset") { try Self.header { $0.walOffset = -1 }.validate() }
        LTXFixture.expectError("negative WAL size") { try Self.header { $0.walOffset = 32; $0.walSize = -1 }.validate() }
        LTXFixture.expectError("WAL salt set without a WAL offset") { try Self.header { $0.walSalt2 = 9 }.validate() }
        LTXFixture.expectError("WAL size set without a WAL offset") { try Self.header { $0.walSize = 9 }.validate() }
    }

    @Test("the encoder and decoder both refuse invalid headers")
    func enforcedByCoders() {
        let bad = Self.header { $0.minTXID = TXID(9) }
        LTXFixture.expectError("TXIDs out of order") { _ = try LTXEncoder(header: bad) }
        LTXFixture.expectError("TXIDs out of order") {
            var decoder = LTXDecoder(source: LTXMemorySource(bad.encode()))
            _ = try decoder.decodeHeader()
        }
    }
}
