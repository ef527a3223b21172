import Testing

@testable import ReplFS

/// Vectors computed independently by Tests/tools/ltx_reference.py (pure-Python CRC).
@Suite("LTX checksums")
struct LTXChecksumTests {
    /// Page k of the vector database: byte i is (i * (k + 2) + k) & 0xFF.
    static func vectorPage(_ k: Int) -> [UInt8] {
        (0..<512).map { UInt8(truncatingIfNeeded: $0 * (k + 2) + k) }
    }

    @Test("page checksum vectors")
    func pageVectors() {
        let zeros = [UInt8](repeating: 0, count: 512)
        #expect(zeros.withUnsafeBytes { Checksum.page(PageNumber(1), $0) } == Checksum(0xEFB1_F44F_ECD9_9000))
        let ramp = (0..<4096).map { UInt8($0 % 251) }
        #expect(ramp.withUnsafeBytes { Checksum.page(PageNumber(2), $0) } == Checksum(0xCC7F_177C_3F3C_99F9))
        let expected: [UInt64] = [0xC4E8_6FD4_F108_CA22, 0xF39B_6B77_82ED_539E, 0xF554_6982_C2C2_B492]
        for k in 1...3 {
            let checksum = Self.vectorPage(k).withUnsafeBytes { Checksum.page(PageNumber(UInt32(k)), $0) }
            #expect(checksum == Checksum(expected[k - 1]), "page \(k)")
        }
    }

    @Test("database checksum vector, full and rolling")
    func databaseVector() {
        let pages = (1...3).map(Self.vectorPage)
        #expect(LTXFixture.databaseChecksum(pages, pageSize: 512) == Checksum(0xC227_6D21_B127_2D2E))

        var rolling = Checksum.emptyDatabase
        for (i, page) in pages.enumerated() {
            rolling = rolling.replacingPage(old: .zero, new: page.withUnsafeBytes { Checksum.page(PageNumber(UInt32(i + 1)), $0) })
        }
        #expect(rolling == Checksum(0xC227_6D21_B127_2D2E))

        // Removing every page again returns to the empty database checksum.
        for (i, page) in pages.enumerated() {
            rolling = rolling.replacingPage(old: page.withUnsafeBytes { Checksum.page(PageNumber(UInt32(i + 1)), $0) }, new: .zero)
        }
        #expect(rolling == .emptyDatabase)
    }

    @Test("constants and formatting")
    func constants() {
        #expect(Checksum.flag.rawValue == 1 << 63)
        #expect(Checksum.emptyDatabase == .flag)
        #expect(Checksum(0xAB).description == "00000000000000ab")
        #expect(Checksum.flag.hasFlag && !Checksum.zero.hasFlag)
    }
}
