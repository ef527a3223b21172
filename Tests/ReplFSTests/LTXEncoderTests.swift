import Testing

@testable import ReplFS

@Suite("LTX encoder rules")
struct LTXEncoderTests {
    static let pageSize = 512
    static let page = LTXFixture.page(size: pageSize, seed: 1)
    static let incremental = LTXHeader(pageSize: UInt32(pageSize), commit: 10, minTXID: TXID(3), maxTXID: TXID(3),
                                       preApplyChecksum: Checksum(0x8000_0000_0000_0001))
    static let snapshot = LTXHeader(pageSize: UInt32(pageSize), commit: 3, minTXID: TXID(1), maxTXID: TXID(1))

    @Test("page order, bounds and size")
    func pageRules() throws {
        var encoder = try LTXEncoder(header: Self.incremental)
        LTXFixture.expectError("page numbers start at 1") { try encoder.append(PageNumber(0), page: Self.page) }
        LTXFixture.expectError("page 11: beyond the commit size of 10 pages") { try encoder.append(PageNumber(11), page: Self.page) }
        LTXFixture.expectError("page is 511 bytes, expected the page size 512") {
            try encoder.append(PageNumber(2), page: Array(Self.page.dropLast()))
        }
        try encoder.append(PageNumber(5), page: Self.page)
        LTXFixture.expectError("page 5: out of order") { try encoder.append(PageNumber(5), page: Self.page) }
        LTXFixture.expectError("page 4: out of order") { try encoder.append(PageNumber(4), page: Self.page) }
        // Rejected appends leave the encoder usable.
        try encoder.append(PageNumber(6), page: Self.page)
        try encoder.finish(postApplyChecksum: Checksum(0x8000_0000_0000_0002))
        let decoded = try LTXFixture.decode(encoder.takeBytes())
        #expect(decoded.pages.map(\.0) == [PageNumber(5), PageNumber(6)])
    }

    @Test("snapshots must contain every page, in order")
    func snapshotRules() throws {
        var encoder = try LTXEncoder(header: Self.snapshot)
        LTXFixture.expectError("snapshot must contain every page; expected page 1") { try encoder.append(PageNumber(2), page: Self.page) }
        try encoder.append(PageNumber(1), page: Self.page)
        LTXFixture.expectError("expected page 2") { try encoder.append(PageNumber(3), page: Self.page) }
        try encoder.append(PageNumber(2), page: Self.page)
        LTXFixture.expectError("snapshot is incomplete: ends after page 2 but commit is 3") {
            try encoder.finish(postApplyChecksum: .emptyDatabase)
        }
        try encoder.append(PageNumber(3), page: Self.page)
        let correct = LTXFixture.databaseChecksum([Self.page, Self.page, Self.page], pageSize: Self.pageSize)
        LTXFixture.expectError("snapshot post-apply checksum mismatch: stored 8000000000000001 computed \(correct)") {
            try encoder.finish(postApplyChecksum: Checksum(0x8000_0000_0000_0001))
        }
        try encoder.finish(postApplyChecksum: correct)
    }

    @Test("post-apply checksum rules")
    func trailerRules() throws {
        var encoder = try LTXEncoder(header: Self.incremental)
        LTXFixture.expectError("post-apply checksum 0000000000000007 lacks the flag bit") {
            try encoder.finish(postApplyChecksum: Checksum(7))
        }
        LTXFixture.expectError("lacks the flag bit") { try encoder.finish(postApplyChecksum: .zero) }
        try encoder.finish(postApplyChecksum: Checksum(0x8000_0000_0000_0007))
    }

    @Test("state misuse")
    func misuse() throws {
        var encoder = try LTXEncoder(header: Self.incremental)
        try encoder.finish(postApplyChecksum: Checksum(0x8000_0000_0000_0007))
        LTXFixture.expectError("append(1) after finish") { try encoder.append(PageNumber(1), page: Self.page) }
        LTXFixture.expectError("finish called twice") { try encoder.finish(postApplyChecksum: Checksum(0x8000_0000_0000_0007)) }
    }

    @Test("one-page transaction encoding cost (printed)")
    func onePageCost() throws {
        let page = LTXFixture.page(size: 4096, seed: 9)
        var header = LTXHeader(pageSize: 4096, commit: 100, minTXID: TXID(2), maxTXID: TXID(2),
                               preApplyChecksum: Checksum(0x8000_0000_0000_0001))
        var encoder = try LTXEncoder(header: header)
        let iterations = 2000
        var total = 0
        let elapsed = try ContinuousClock().measure {
            for i in 0..<iterations {
                header.minTXID = TXID(UInt64(i + 2))
                header.maxTXID = header.minTXID
                try encoder.reset(header: header)
                try encoder.append(PageNumber(42), page: page)
                try encoder.finish(postApplyChecksum: Checksum(0x8000_0000_0000_0002))
                encoder.drain { total += $0.count }
            }
        }
        print("LTXEncoder: one 4 KiB page transaction in \(elapsed / iterations) on average (\(total / iterations) bytes)")
    }
}
