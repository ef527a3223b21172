import Testing

@testable import ReplFS

@Suite("LTX decoder: corruption and truncation")
struct LTXDecoderTests {
    /// A small file with incompressible pages, so every payload byte matters.
    static func smallFile() throws -> [UInt8] {
        let header = LTXHeader(pageSize: 512, commit: 8, minTXID: TXID(4), maxTXID: TXID(6), timestamp: 12,
                               preApplyChecksum: Checksum(0x8000_0000_0000_0011))
        let pages: [(UInt32, [UInt8])] = [(2, LTXFixture.randomBytes(512, seed: 2)), (7, LTXFixture.randomBytes(512, seed: 7))]
        return try LTXFixture.encode(header, pages: pages, post: Checksum(0x8000_0000_0000_0022))
    }

    /// Offsets of the page frames in `bytes` (walking the size prefixes).
    static func frameOffsets(_ bytes: [UInt8]) -> [Int] {
        var offsets: [Int] = []
        var position = 100
        while bytes[position..<position + 6].contains(where: { $0 != 0 }) {
            offsets.append(position)
            let size = bytes[position + 6..<position + 10].reduce(0) { $0 << 8 | Int($1) }
            position += 10 + size
        }
        return offsets
    }

    /// Recomputes the file checksum after a deliberate edit, so tests can
    /// reach the rules that are checked after it.
    static func reseal(_ bytes: inout [UInt8], pageSize: Int) throws {
        var crc = CRC64()
        var logical = Array(bytes[..<100])
        var position = 100
        for offset in frameOffsets(bytes) {
            let size = bytes[offset + 6..<offset + 10].reduce(0) { $0 << 8 | Int($1) }
            logical += bytes[offset..<offset + 10]
            var page = [UInt8](repeating: 0, count: pageSize)
            let n = Array(bytes[offset + 10..<offset + 10 + size]).withUnsafeBytes { src in
                page.withUnsafeMutableBytes { LZ4.decompress(src, into: $0) }
            }
            #expect(n == pageSize)
            logical += page
            position = offset + 10 + size
        }
        logical += bytes[position..<bytes.count - 8]
        logical.withUnsafeBytes { crc.update($0) }
        var sealed: [UInt8] = []
        BigEndian.append(Checksum.flag.rawValue | crc.value, to: &sealed)
        bytes.replaceSubrange((bytes.count - 8)..., with: sealed)
    }

    static func patchUInt32(_ bytes: inout [UInt8], at offset: Int, _ value: UInt32) {
        var be: [UInt8] = []
        BigEndian.append(value, to: &be)
        bytes.replaceSubrange(offset..<offset + 4, with: be)
    }

    @Test("the unmodified file decodes")
    func baseline() throws {
        let decoded = try LTXFixture.decode(try Self.smallFile())
        #expect(decoded.pages.count == 2)
    }

    @Test("flipping any byte of a file with incompressible pages is detected")
    func everyByteFlip() throws {
        let bytes = try Self.smallFile()
        let original = try LTXFixture.decode(bytes)
        var undetected: [Int] = []
        for offset in bytes.indices {
            for mask: UInt8 in [0x01, 0x80] {
                var corrupt = bytes
                corrupt[offset] ^= mask
                do {
                    let decoded = try LTXFixture.decode(corrupt)
                    // Only acceptable if the logical content is unchanged.
                    #expect(decoded.pages.map(\.1) == original.pages.map(\.1) && decoded.trailer == original.trailer)
                    undetected.append(offset)
                } catch {
                    #expect(!error.description.isEmpty)
                }
            }
        }
        // The only harmless flips: the match-length nibble of each block's
        // single (final, literals-only) LZ4 sequence token, which decoders
        // ignore. The file checksum covers decompressed data, so such a flip
        // changes nothing that matters.
        let tokens = Self.frameOffsets(bytes).map { $0 + 10 }
        #expect(undetected == tokens, "undetected flips at \(undetected), tokens at \(tokens)")
    }

    @Test("a flipped byte in a compressible file is detected or changes nothing")
    func compressibleFlips() throws {
        var db = LTXFixture.Database(pageSize: 512)
        let bytes = try db.snapshot(pageCount: 3, seed: 1)
        let original = try LTXFixture.decode(bytes)
        var silent = 0
        for offset in bytes.indices {
            var corrupt = bytes
            corrupt[offset] ^= 0x04
            if let decoded = try? LTXFixture.decode(corrupt) {
                // Only possible when a different LZ4 encoding yields the same page.
                #expect(decoded.pages.map(\.1) == original.pages.map(\.1), "offset \(offset)")
                #expect(decoded.header == original.header && decoded.trailer == original.trailer)
                silent += 1
            }
        }
        print("compressible flips that decode to identical content: \(silent) of \(bytes.count)")
    }

    @Test("truncation at every length fails with a clear error")
    func everyTruncation() throws {
        let bytes = try Self.smallFile()
        for length in 0..<bytes.count {
            guard let error = LTXFixture.error({ _ = try LTXFixture.decode(Array(bytes[..<length])) }) else {
                Issue.record("truncation to \(length) bytes not detected")
                continue
            }
            #expect(error.description.hasPrefix("truncated at offset"), "length \(length): \(error)")
        }
        LTXFixture.expectError("truncated at offset 0: expected 100-byte header; the file ends at offset 0") {
            _ = try LTXFixture.decode([])
        }
        LTXFixture.expectError("truncated at offset \(bytes.count - 16): expected 16-byte trailer") {
            _ = try LTXFixture.decode(Array(bytes.dropLast()))
        }
        LTXFixture.expectError("truncated at offset \(bytes.count - 24): expected 8-byte page index size") {
            _ = try LTXFixture.decode(Array(bytes.dropLast(17)))
        }
    }

    @Test("bytes after the trailer are rejected")
    func trailingBytes() throws {
        let bytes = try Self.smallFile()
        LTXFixture.expectError("unexpected data after the trailer at offset \(bytes.count)") {
            _ = try LTXFixture.decode(bytes + [0])
        }
    }

    @Test("file checksum mismatch names both values")
    func fileChecksum() throws {
        var bytes = try Self.smallFile()
        bytes[33] ^= 0x01  // the timestamp, which no other rule looks at
        LTXFixture.expectError("file checksum mismatch: stored") { _ = try LTXFixture.decode(bytes) }
    }

    @Test("pages stored as LZ4 frames (no size prefix: Litestream 0.5's oldest readers) decode, are checked, and sum to the same file checksum rules")
    func lz4FramePages() throws {
        let header = LTXHeader(flags: .noChecksum, pageSize: 4096, commit: 3, minTXID: TXID(1), maxTXID: TXID(2), timestamp: 12)
        let pages = (1...3).map { LTXFixture.randomBytes(4096, seed: UInt64($0)) }
        var encoder = try LTXEncoder(header: header, pageEncoding: .lz4Frame)
        for (index, page) in pages.enumerated() { try encoder.append(PageNumber(UInt32(index + 1)), page: page) }
        try encoder.finish(postApplyChecksum: .zero)
        let bytes = encoder.takeBytes()
        // No size-prefix flag, and the LZ4 frame magic right after the page header.
        #expect(bytes[104...105] == [0, 0] && bytes[106...109] == [0x04, 0x22, 0x4D, 0x18])
        let decoded = try LTXFixture.decode(bytes)
        #expect(decoded.pages.map(\.1) == pages)
        // A byte of a frame changed: refused (the frame's own checksum, or the file's).
        var damaged = bytes
        damaged[200] ^= 0xFF
        #expect(throws: LTXError.self) { _ = try LTXFixture.decode(damaged) }
        // Cut inside a frame: refused, no hang.
        #expect(throws: LTXError.self) { _ = try LTXFixture.decode(Array(bytes[..<300])) }
    }

    @Test("page rules are enforced with page number and offset")
    func pageRules() throws {
        let bytes = try Self.smallFile()
        let frames = Self.frameOffsets(bytes)
        var outOfOrder = bytes
        Self.patchUInt32(&outOfOrder, at: frames[1], 2)
        LTXFixture.expectError("page 2 at offset \(frames[1]): out of order: follows page 2") { _ = try LTXFixture.decode(outOfOrder) }
        var beyond = bytes
        Self.patchUInt32(&beyond, at: frames[1], 9)
        LTXFixture.expectError("page 9 at offset \(frames[1]): beyond the commit size of 8 pages") { _ = try LTXFixture.decode(beyond) }
        var badFlags = bytes
        badFlags[frames[0] + 5] = 0x03
        LTXFixture.expectError("page 2 at offset 100: invalid page header flags 0x3") { _ = try LTXFixture.decode(badFlags) }
        var legacy = bytes
        legacy[frames[0] + 5] = 0x00
        // Without the flag the page must be an LZ4 frame; a block is not one.
        LTXFixture.expectError("malformed LZ4 frame") { _ = try LTXFixture.decode(legacy) }
        var zeroPgno = bytes
        Self.patchUInt32(&zeroPgno, at: frames[0], 0)
        LTXFixture.expectError("at offset 100: page header has page number 0") { _ = try LTXFixture.decode(zeroPgno) }
        var hugeSize = bytes
        Self.patchUInt32(&hugeSize, at: frames[0] + 6, 0x7FFF_FFFF)
        LTXFixture.expectError("compressed size 2147483647 is outside 1...530") { _ = try LTXFixture.decode(hugeSize) }
    }

    @Test("the lock page is rejected by the decoder")
    func lockPage() throws {
        let pageSize = 65536
        let lock = PageNumber.lockPage(pageSize: pageSize).rawValue
        let header = LTXHeader(pageSize: UInt32(pageSize), commit: lock + 1, minTXID: TXID(2), maxTXID: TXID(2),
                               preApplyChecksum: Checksum(0x8000_0000_0000_0003))
        var bytes = try LTXFixture.encode(header, pages: [(lock - 1, [UInt8](repeating: 1, count: pageSize))],
                                          post: Checksum(0x8000_0000_0000_0004))
        Self.patchUInt32(&bytes, at: 100, lock)
        LTXFixture.expectError("page 16385 at offset 100: the lock page must not be stored") { _ = try LTXFixture.decode(bytes) }
    }

    @Test("a block that decompresses to the wrong size is reported")
    func wrongDecompressedSize() throws {
        var bytes = try Self.smallFile()
        let frames = Self.frameOffsets(bytes)
        let short = LTXFixture.randomBytes(100, seed: 1)
        var block = [UInt8](repeating: 0, count: LZ4.compressBound(100))
        let n = short.withUnsafeBytes { src in block.withUnsafeMutableBytes { LZ4.compress(src, into: $0) } }
        let oldSize = bytes[frames[0] + 6..<frames[0] + 10].reduce(0) { $0 << 8 | Int($1) }
        bytes.replaceSubrange(frames[0] + 10..<frames[0] + 10 + oldSize, with: block[..<n])
        Self.patchUInt32(&bytes, at: frames[0] + 6, UInt32(n))
        LTXFixture.expectError("page 2 at offset 100: lz4 block does not decompress to 512 bytes (got 100 bytes)") {
            _ = try LTXFixture.decode(bytes)
        }
    }

    @Test("snapshots: missing pages and wrong post-apply checksum")
    func snapshotRules() throws {
        var db = LTXFixture.Database(pageSize: 512)
        let bytes = try db.snapshot(pageCount: 3, seed: 4)
        let frames = Self.frameOffsets(bytes)

        var missing = bytes
        Self.patchUInt32(&missing, at: frames[1], 3)
        LTXFixture.expectError("page 3 at offset \(frames[1]): snapshot is missing page 2") { _ = try LTXFixture.decode(missing) }

        var short = bytes
        Self.patchUInt32(&short, at: 12, 4)  // commit 4 but only 3 pages
        LTXFixture.expectError("snapshot ends after page 3 but its commit size is 4 pages") { _ = try LTXFixture.decode(short) }

        var wrongPost = bytes
        Self.patchUInt32(&wrongPost, at: bytes.count - 12, 0x1234)
        try Self.reseal(&wrongPost, pageSize: 512)
        LTXFixture.expectError("post-apply checksum mismatch: stored") { _ = try LTXFixture.decode(wrongPost) }
    }

    @Test("trailer rules are enforced after the file checksum")
    func trailerRules() throws {
        var bytes = try Self.smallFile()
        Self.patchUInt32(&bytes, at: bytes.count - 16, 0)  // clear the flag of the post-apply checksum
        try Self.reseal(&bytes, pageSize: 512)
        LTXFixture.expectError("invalid trailer: post-apply checksum 0000000000000022 lacks the flag bit") {
            _ = try LTXFixture.decode(bytes)
        }
    }

    @Test("a page index that disagrees with the frames is reported")
    func indexMismatch() throws {
        let bytes = try Self.smallFile()
        let frames = Self.frameOffsets(bytes)
        let size = bytes[frames[1] + 6..<frames[1] + 10].reduce(0) { $0 << 8 | Int($1) }
        let indexStart = frames[1] + 10 + size + 6
        var wrong = bytes
        wrong[indexStart] = 3  // page 2 -> 3 in the first entry
        LTXFixture.expectError("at offset \(indexStart): page index entry 1 (page 3, offset 100") { _ = try LTXFixture.decode(wrong) }
    }

    @Test("API misuse is reported, not trapped")
    func misuse() throws {
        var decoder = LTXDecoder(source: LTXMemorySource(try Self.smallFile()))
        var page = [UInt8](repeating: 0, count: 100)
        LTXFixture.expectError("before decodeHeader") { _ = try decoder.finish() }
        _ = try decoder.decodeHeader()
        LTXFixture.expectError("decodeHeader called twice") { _ = try decoder.decodeHeader() }
        LTXFixture.expectError("page buffer is 100 bytes") {
            _ = try page.withUnsafeMutableBytes { try decoder.nextPage(into: $0) }
        }
        _ = try decoder.finish()
        LTXFixture.expectError("finish called twice") { _ = try decoder.finish() }
    }
}
