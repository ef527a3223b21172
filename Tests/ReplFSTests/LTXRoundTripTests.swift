import Foundation
import Testing

@testable import ReplFS

@Suite("LTX encoder/decoder round trip")
struct LTXRoundTripTests {
    /// Asserts that `bytes` decodes to exactly `header`, `pages` and `post`.
    static func expectRoundTrip(
        _ bytes: [UInt8], _ header: LTXHeader, _ pages: [(UInt32, [UInt8])], post: Checksum,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let decoded = try LTXFixture.decode(bytes)
        #expect(decoded.header == header, sourceLocation: sourceLocation)
        #expect(decoded.pages.map(\.0.rawValue) == pages.map(\.0), sourceLocation: sourceLocation)
        #expect(decoded.pages.map(\.1) == pages.map(\.1), sourceLocation: sourceLocation)
        #expect(decoded.trailer.postApplyChecksum == post, sourceLocation: sourceLocation)
    }

    @Test("snapshot round trip", arguments: [512, 1024, 4096, 65536])
    func snapshot(pageSize: Int) throws {
        var db = LTXFixture.Database(pageSize: pageSize)
        let bytes = try db.snapshot(pageCount: 5, seed: UInt64(pageSize))
        let header = LTXHeader(pageSize: UInt32(pageSize), commit: 5, minTXID: TXID(1), maxTXID: TXID(1), timestamp: 1_700_000_000_000)
        try Self.expectRoundTrip(bytes, header, db.pages.enumerated().map { (UInt32($0 + 1), $1) }, post: db.checksum)
    }

    @Test("non-snapshot round trip with sparse pages", arguments: [512, 4096, 65536])
    func incremental(pageSize: Int) throws {
        let pages: [(UInt32, [UInt8])] = [2, 3, 9, 40].map { ($0, LTXFixture.page(size: pageSize, seed: UInt64($0))) }
        let header = LTXHeader(pageSize: UInt32(pageSize), commit: 40, minTXID: TXID(7), maxTXID: TXID(9),
                               timestamp: 99, preApplyChecksum: Checksum(0x8000_0000_0000_1234), walOffset: 32,
                               walSize: 4096, walSalt1: 1, walSalt2: 2, nodeID: 5)
        let post = Checksum(0x8765_4321_0000_0001)
        let bytes = try LTXFixture.encode(header, pages: pages, post: post)
        try Self.expectRoundTrip(bytes, header, pages, post: post)
    }

    @Test("a transaction with no pages (only a size change)")
    func noPages() throws {
        let header = LTXHeader(pageSize: 4096, commit: 3, minTXID: TXID(4), maxTXID: TXID(4), preApplyChecksum: Checksum(0x8000_0000_0000_0001))
        let bytes = try LTXFixture.encode(header, pages: [], post: Checksum(0x8000_0000_0000_0002))
        #expect(bytes.count == 100 + 6 + 1 + 8 + 16)
        try Self.expectRoundTrip(bytes, header, [], post: Checksum(0x8000_0000_0000_0002))
    }

    @Test("commit 0 deletes the database and requires the empty checksum")
    func deletion() throws {
        let header = LTXHeader(pageSize: 4096, commit: 0, minTXID: TXID(5), maxTXID: TXID(5), preApplyChecksum: Checksum(0x8000_0000_0000_00FF))
        let bytes = try LTXFixture.encode(header, pages: [], post: .emptyDatabase)
        try Self.expectRoundTrip(bytes, header, [], post: .emptyDatabase)
        LTXFixture.expectError("must be 8000000000000000 for a deleted database") {
            _ = try LTXFixture.encode(header, pages: [], post: Checksum(0x8000_0000_0000_0001))
        }
        // An empty snapshot is a deletion too.
        let emptySnapshot = LTXHeader(pageSize: 4096, commit: 0, minTXID: TXID(1), maxTXID: TXID(1))
        try Self.expectRoundTrip(try LTXFixture.encode(emptySnapshot, pages: [], post: .emptyDatabase), emptySnapshot, [], post: .emptyDatabase)
    }

    @Test("noChecksum files carry zero database checksums")
    func noChecksum() throws {
        let header = LTXHeader(flags: .noChecksum, pageSize: 1024, commit: 2, minTXID: TXID(3), maxTXID: TXID(3))
        let pages: [(UInt32, [UInt8])] = [(2, LTXFixture.page(size: 1024, seed: 2))]
        try Self.expectRoundTrip(try LTXFixture.encode(header, pages: pages, post: .zero), header, pages, post: .zero)
        LTXFixture.expectError("not allowed with the noChecksum flag") {
            _ = try LTXFixture.encode(header, pages: pages, post: Checksum(0x8000_0000_0000_0001))
        }
    }

    @Test("pages around the lock page: the lock page itself is never encoded")
    func lockPage() throws {
        let pageSize = 65536
        let lock = PageNumber.lockPage(pageSize: pageSize).rawValue
        #expect(lock == 16385)
        let header = LTXHeader(pageSize: UInt32(pageSize), commit: lock + 5, minTXID: TXID(2), maxTXID: TXID(2),
                               preApplyChecksum: Checksum(0x8000_0000_0000_0003))
        let pages: [(UInt32, [UInt8])] = [lock - 1, lock + 1].map { ($0, LTXFixture.page(size: pageSize, seed: UInt64($0))) }
        let post = Checksum(0x8000_0000_0000_0004)
        try Self.expectRoundTrip(try LTXFixture.encode(header, pages: pages, post: post), header, pages, post: post)

        var encoder = try LTXEncoder(header: header)
        try encoder.append(PageNumber(lock - 1), page: pages[0].1)
        LTXFixture.expectError("lock page is never stored") { try encoder.append(PageNumber(lock), page: pages[0].1) }
    }

    @Test("a snapshot past 1 GiB skips the lock page (set LTX_SLOW_TESTS=1)",
          .enabled(if: ProcessInfo.processInfo.environment["LTX_SLOW_TESTS"] == "1"))
    func snapshotAcrossLockPage() throws {
        let pageSize = 65536
        let lock = PageNumber.lockPage(pageSize: pageSize).rawValue
        let commit = lock + 2
        let zeros = [UInt8](repeating: 0, count: pageSize)
        var marked = zeros
        var encoder = try LTXEncoder(header: LTXHeader(pageSize: UInt32(pageSize), commit: commit, minTXID: TXID(1), maxTXID: TXID(1)))
        var bytes: [UInt8] = []
        var checksum = Checksum.emptyDatabase
        for pgno in 1...commit where pgno != lock {
            marked.withUnsafeMutableBytes { $0.storeBytes(of: pgno.bigEndian, as: UInt32.self) }
            try encoder.append(PageNumber(pgno), page: marked)
            checksum = checksum.replacingPage(old: .zero, new: marked.withUnsafeBytes { Checksum.page(PageNumber(pgno), $0) })
            encoder.drain { bytes.append(contentsOf: $0) }
        }
        LTXFixture.expectError("lock page") { try encoder.append(PageNumber(lock), page: zeros) }
        try encoder.finish(postApplyChecksum: checksum)
        bytes += encoder.takeBytes()

        var decoder = LTXDecoder(source: LTXMemorySource(bytes))
        _ = try decoder.decodeHeader()
        var page = [UInt8]()
        var expected: UInt32 = 1
        while let pgno = try decoder.nextPage(into: &page) {
            #expect(pgno.rawValue == expected)
            expected += expected + 1 == lock ? 2 : 1
        }
        #expect(try decoder.finish().postApplyChecksum == checksum)
        #expect(decoder.pageCount == Int(commit) - 1)
    }

    @Test("the file layout matches the format")
    func layout() throws {
        let pageSize = 512
        let page = LTXFixture.randomBytes(pageSize, seed: 3)
        let header = LTXHeader(pageSize: UInt32(pageSize), commit: 300, minTXID: TXID(2), maxTXID: TXID(2),
                               preApplyChecksum: Checksum(0x8000_0000_0000_0003))
        let bytes = try LTXFixture.encode(header, pages: [(300, page)], post: Checksum(0x8000_0000_0000_0005))
        #expect(Array(bytes[..<100]) == header.encode())
        #expect(Array(bytes[100..<106]) == [0, 0, 0x01, 0x2C, 0, 1])  // pgno 300, flags 0x0001
        let compressedSize = Int(bytes[106]) << 24 | Int(bytes[107]) << 16 | Int(bytes[108]) << 8 | Int(bytes[109])
        let frameEnd = 110 + compressedSize
        #expect(Array(bytes[frameEnd..<frameEnd + 6]) == [0, 0, 0, 0, 0, 0])
        // Index: varint(300) = ac 02, varint(100) = 64, varint(frame size), terminator 0.
        let frameSize = 10 + compressedSize
        var index: [UInt8] = [0xAC, 0x02, 0x64]
        LEB128.append(UInt64(frameSize), to: &index)
        index.append(0)
        let indexStart = frameEnd + 6
        #expect(Array(bytes[indexStart..<indexStart + index.count]) == index)
        var size: [UInt8] = []
        BigEndian.append(UInt64(index.count), to: &size)
        #expect(Array(bytes[indexStart + index.count..<indexStart + index.count + 8]) == size)
        #expect(bytes.count == indexStart + index.count + 8 + 16)
        #expect(Array(bytes[(bytes.count - 16)..<(bytes.count - 8)]) == [0x80, 0, 0, 0, 0, 0, 0, 5])
        #expect(bytes[bytes.count - 8] & 0x80 == 0x80)
    }

    @Test("draining while encoding gives the same bytes, and reset reuses the encoder")
    func streamingAndReuse() throws {
        var db = LTXFixture.Database(pageSize: 1024)
        let whole = try db.snapshot(pageCount: 40, seed: 11)

        var encoder = try LTXEncoder(header: LTXHeader(pageSize: 1024, commit: 40, minTXID: TXID(1), maxTXID: TXID(1), timestamp: 1_700_000_000_000))
        var streamed: [UInt8] = []
        for (i, page) in db.pages.enumerated() {
            try encoder.append(PageNumber(UInt32(i + 1)), page: page)
            if i % 3 == 0 { streamed += encoder.takeBytes() }
            if i % 3 == 1 { encoder.drain { streamed.append(contentsOf: $0) } }
            #expect(encoder.bufferedByteCount < 4 * 1024)
        }
        try encoder.finish(postApplyChecksum: db.checksum)
        streamed += encoder.takeBytes()
        #expect(streamed == whole)
        #expect(encoder.bytesEncoded == whole.count)
        #expect(encoder.pageCount == 40)
        #expect(encoder.isFinished)

        // Reuse the same encoder for a one-page transaction.
        let header = LTXHeader(pageSize: 1024, commit: 40, minTXID: TXID(2), maxTXID: TXID(2), preApplyChecksum: db.checksum)
        try encoder.reset(header: header)
        try encoder.append(PageNumber(7), page: db.pages[0])
        try encoder.finish(postApplyChecksum: Checksum(0x8000_0000_0000_0009))
        let reused = encoder.takeBytes()
        #expect(reused == (try LTXFixture.encode(header, pages: [(7, db.pages[0])], post: Checksum(0x8000_0000_0000_0009))))
    }

    /// A source that returns at most `chunk` bytes per read, to exercise the
    /// decoder's buffering.
    struct TrickleSource: LTXByteSource {
        var inner: LTXMemorySource
        let chunk: Int
        mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int {
            try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(chunk)))
        }
    }

    @Test("decoding works with short reads and from a file descriptor", arguments: [1, 3, 7, 4096])
    func sources(chunk: Int) throws {
        var db = LTXFixture.Database(pageSize: 4096)
        let bytes = try db.snapshot(pageCount: 6, seed: 5)
        var decoder = LTXDecoder(source: TrickleSource(inner: LTXMemorySource(bytes), chunk: chunk))
        _ = try decoder.decodeHeader()
        var page = [UInt8]()
        var seen: [[UInt8]] = []
        while try decoder.nextPage(into: &page) != nil { seen.append(page) }
        _ = try decoder.finish()
        #expect(seen == db.pages)
        #expect(decoder.bytesConsumed == bytes.count)

        let dir = LTXFixture.temporaryDirectory()
        let path = dir + "/snapshot.ltx"
        try LTXFixture.write(bytes, to: path)
        let source = try LTXFileSource(path: path)
        defer { source.close() }
        var fileDecoder = LTXDecoder(source: source)
        _ = try fileDecoder.decodeHeader()
        // finish() decodes the remaining pages itself.
        let trailer = try fileDecoder.finish()
        #expect(trailer.postApplyChecksum == db.checksum)
        #expect(fileDecoder.pageCount == 6)
    }
}
