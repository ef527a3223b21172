import Foundation
import Testing

@testable import ReplFS

/// The segment layout of a log, without a mount: appends, an abandoned
/// transaction, a replay's cut, and what a reopen finds.
@Suite("LTX log directory")
struct LTXLogDirectoryTests {
    static func ltx(_ txid: UInt64) throws -> [UInt8] {
        let header = LTXHeader(pageSize: 512, commit: 1, minTXID: TXID(txid), maxTXID: TXID(txid), timestamp: 1, preApplyChecksum: Checksum(rawValue: 1 << 63))
        var encoder = try LTXEncoder(header: header)
        try encoder.append(PageNumber(1), page: [UInt8](repeating: UInt8(txid & 0xFF), count: 512))
        try encoder.finish(postApplyChecksum: Checksum(rawValue: 1 << 63))
        return encoder.takeBytes()
    }

    static func records(in directory: String) -> [UInt64] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".segment") }.sorted()
        var txids: [UInt64] = []
        for name in names {
            let fd = open(directory + "/" + name, O_RDONLY)
            defer { close(fd) }
            var reader = LTXSegmentReader(fileDescriptor: fd)
            while let record = reader.next() { txids.append(record.maxTXID.rawValue) }
        }
        return txids
    }

    @Test("records go into one segment; an abandoned one and a replay's cut leave exactly the rest; a reopen finds the last TXID")
    func layout() throws {
        let directory = NSTemporaryDirectory() + "replfs-logdir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fd = open(directory, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        do {
            var log = LTXLogDirectory(directoryFD: fd)
            for txid in 11...15 { #expect(throws: Never.self) { try log.append(Self.ltx(UInt64(txid)), minTXID: TXID(UInt64(txid)), maxTXID: TXID(UInt64(txid)), now: 1).get() } }
            #expect(log.entries.count == 1)
            log.removeNewest(TXID(15))
            #expect(log.lastTXID == TXID(14))
            _ = log.append(try Self.ltx(15), minTXID: TXID(15), maxTXID: TXID(15), now: 1)
            _ = log.append(try Self.ltx(16), minTXID: TXID(16), maxTXID: TXID(16), now: 1)
        }
        #expect(Self.records(in: directory) == [11, 12, 13, 14, 15, 16])
        do {
            var log = LTXLogDirectory(directoryFD: fd)
            #expect(log.lastTXID == TXID(16))
            log.truncateSegments(from: TXID(14))
            #expect(log.lastTXID == TXID(13))
            // A record after the cut starts where it belongs.
            _ = log.append(try Self.ltx(14), minTXID: TXID(14), maxTXID: TXID(14), now: 1)
        }
        #expect(Self.records(in: directory) == [11, 12, 13, 14])
        // A torn tail (a crash mid-append) is cut at open.
        let segment = directory + "/" + LTXSegment.name(firstTXID: TXID(11))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data([0, 0, 1, 0, 0x4C, 0x54]))
        try handle.close()
        let log = LTXLogDirectory(directoryFD: fd)
        #expect(log.lastTXID == TXID(14))
        #expect(Self.records(in: directory) == [11, 12, 13, 14])
    }
}
