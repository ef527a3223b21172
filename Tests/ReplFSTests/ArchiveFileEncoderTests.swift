import Foundation
import Testing

@testable import ReplFS

/// The archive's files: the log's records (with database checksums)
/// re-encoded in Litestream's flavour and merged into one file per range.
@Suite("Archive file encoder")
struct ArchiveFileEncoderTests {
    typealias Fixture = ArchiveFixture

    /// A record as the log holds it: checksums tracked, just the pages the
    /// transaction wrote (every page for TXID 1).
    static func record(_ txid: UInt64, commit: UInt32? = nil, pages: [UInt32: [UInt8]]? = nil, postApply: Checksum? = nil) throws -> LTXContent {
        let state = Fixture.state(txid)
        let changes = pages ?? Fixture.transactions[Int(txid) - 1]
        let header = LTXHeader(
            pageSize: UInt32(Fixture.pageSize), commit: commit ?? UInt32(state.count), minTXID: TXID(txid), maxTXID: TXID(txid),
            timestamp: Fixture.time(txid), preApplyChecksum: txid == 1 ? .zero : Fixture.checksum(txid - 1))
        var encoder = try LTXEncoder(header: header)
        for pgno in (txid == 1 ? Array(1...UInt32(state.count)) : changes.keys.sorted()) {
            try encoder.append(PageNumber(pgno), page: changes[pgno] ?? state[Int(pgno) - 1])
        }
        try encoder.finish(postApplyChecksum: postApply ?? Fixture.checksum(txid))
        return .bytes(encoder.takeBytes())
    }

    /// Decodes a file: its header and pages.
    static func decode(_ path: String) throws -> (LTXHeader, [UInt32: [UInt8]]) {
        var decoder = try LTXContent.file(path).decoder()
        defer { decoder.source.closeIfFile() }
        let header = try decoder.decodeHeader()
        var pages: [UInt32: [UInt8]] = [:]
        var page = [UInt8](repeating: 0, count: Int(header.pageSize))
        while let pgno = try decoder.nextPage(into: &page) { pages[pgno.rawValue] = page }
        let trailer = try decoder.finish()
        #expect(trailer.postApplyChecksum == .zero)
        return (header, pages)
    }

    @Test("consecutive records merge into one noChecksum file: the last version of each page changed, the range and the last commit's time, the end's checksum returned")
    func merge() throws {
        let fixture = Fixture()
        let path = fixture.root + "/0000000000000002-0000000000000005.ltx"
        let file = try DurableFile(path: path)
        let written = try #require(try ArchiveFileEncoder.merge(try (2...5).map { try Self.record($0) }, into: file))
        try file.commit(timestamp: written.header.timestamp)
        #expect(written.postApply == Fixture.checksum(5))
        let (header, pages) = try Self.decode(path)
        #expect(header.flags == .noChecksum && header.preApplyChecksum == .zero)
        #expect(header.minTXID == TXID(2) && header.maxTXID == TXID(5) && header.timestamp == Fixture.time(5))
        let final = Fixture.state(5)
        #expect(Set(pages.keys) == [1, 2, 3, 4])
        for (pgno, content) in pages { #expect(content == final[Int(pgno) - 1], "page \(pgno)") }
        // Litestream's flavour for one record too, and from TXID 1 it is a
        // snapshot (every page).
        let single = fixture.root + "/0000000000000001-0000000000000001.ltx"
        let one = try DurableFile(path: single)
        _ = try ArchiveFileEncoder.merge([try Self.record(1)], into: one)
        try one.commit(timestamp: nil)
        let (first, firstPages) = try Self.decode(single)
        #expect(first.flags == .noChecksum && first.isSnapshot && firstPages.count == 3)
    }

    @Test("a database that shrinks keeps no page beyond its new size; a new page size starts the merge afresh")
    func shrinkAndPageSize() throws {
        let fixture = Fixture()
        let path = fixture.root + "/merged.ltx"
        let file = try DurableFile(path: path)
        // TXID 5 writes page 5; TXID 6 shrinks the database to 3 pages.
        var shrunk = Array(Fixture.state(5).prefix(3))
        shrunk[1] = Fixture.page(99)
        let shrink = try Self.record(6, commit: 3, pages: [2: Fixture.page(99)], postApply: LTXFixture.databaseChecksum(shrunk, pageSize: Fixture.pageSize))
        let records = [try Self.record(5), shrink]
        _ = try ArchiveFileEncoder.merge(records, into: file)
        try file.commit(timestamp: nil)
        let (header, pages) = try Self.decode(path)
        #expect(header.commit == 3)
        #expect(Set(pages.keys) == [2, 3], "page 5 went with the shrink")
        #expect(pages[2] == Fixture.page(99))

        // VACUUM to 1024-byte pages: the record holds the whole database.
        let big = LTXHeader(pageSize: 1024, commit: 2, minTXID: TXID(7), maxTXID: TXID(7), timestamp: Fixture.time(7), preApplyChecksum: Fixture.checksum(6))
        var encoder = try LTXEncoder(header: big)
        for pgno in UInt32(1)...2 { try encoder.append(PageNumber(pgno), page: LTXFixture.page(size: 1024, seed: UInt64(700 + pgno))) }
        try encoder.finish(postApplyChecksum: LTXFixture.databaseChecksum([LTXFixture.page(size: 1024, seed: 701), LTXFixture.page(size: 1024, seed: 702)], pageSize: 1024))
        let vacuumed = fixture.root + "/vacuumed.ltx"
        let second = try DurableFile(path: vacuumed)
        _ = try ArchiveFileEncoder.merge([try Self.record(5), .bytes(encoder.takeBytes())], into: second)
        try second.commit(timestamp: nil)
        let (after, afterPages) = try Self.decode(vacuumed)
        #expect(after.pageSize == 1024 && after.minTXID == TXID(5) && after.maxTXID == TXID(7))
        #expect(Set(afterPages.keys) == [1, 2] && afterPages[1] == LTXFixture.page(size: 1024, seed: 701))
    }

    @Test("a merge that would hold more pages in memory than its limit gives up (the archiver merges halves); one source is streamed whatever its size")
    func memoryLimit() throws {
        let fixture = Fixture()
        let file = try DurableFile(path: fixture.root + "/limited.ltx")
        #expect(try ArchiveFileEncoder.merge(try (1...3).map { try Self.record($0) }, into: file, memoryLimit: 2 * Fixture.pageSize) == nil)
        file.abandon()
        let single = try DurableFile(path: fixture.root + "/single.ltx")
        #expect(try ArchiveFileEncoder.merge([try Self.record(1)], into: single, memoryLimit: 1) != nil)
    }

    @Test("groups stay under the byte limit; a file larger than it is a group of its own")
    func groups() {
        let sizes: [Int64] = [3, 3, 3, 10, 1, 1]
        let grouped = ArchiveFileEncoder.groups(sizes, size: { $0 }, limit: 6)
        #expect(grouped == [[3, 3], [3], [10], [1, 1]])
    }
}
