import Testing

@testable import ReplFS

@Suite("LTX chain verifier")
struct LTXChainVerifierTests {
    /// A snapshot followed by transactions that modify, grow (with a hole)
    /// and shrink the database; returns the files and the final model.
    static func chain(pageSize: Int = 512) throws -> ([[UInt8]], LTXFixture.Database) {
        var db = LTXFixture.Database(pageSize: pageSize)
        var files = [try db.snapshot(pageCount: 4, seed: 100)]
        files.append(try db.commit([2: LTXFixture.page(size: pageSize, seed: 1)]))
        files.append(try db.commit([5: LTXFixture.page(size: pageSize, seed: 2), 9: LTXFixture.page(size: pageSize, seed: 3)]))
        files.append(try db.commit([1: LTXFixture.page(size: pageSize, seed: 4)], size: 6))
        files.append(try db.commit([3: LTXFixture.page(size: pageSize, seed: 5), 4: LTXFixture.page(size: pageSize, seed: 6)]))
        return (files, db)
    }

    @Test("a good chain verifies, from a directory or a shuffled list")
    func goodChain() throws {
        let (files, db) = try Self.chain()
        let dir = LTXFixture.temporaryDirectory()
        let paths = try LTXFixture.writeChain(files, in: dir)
        try LTXFixture.write([1, 2, 3], to: dir + "/not-an-ltx-file.tmp")

        let summary = try LTXChainVerifier().verify(directory: dir)
        #expect(summary == LTXChainSummary(fileCount: 5, firstTXID: TXID(1), lastTXID: TXID(5),
                                           postApplyChecksum: db.checksum, pageSize: 512, commit: 6))
        #expect(try LTXChainVerifier().verify(files: paths.reversed()) == summary)
        #expect(try LTXChainVerifier.files(inDirectory: dir) == paths)
    }

    @Test("a missing file is a gap naming the next file")
    func gap() throws {
        let (files, _) = try Self.chain()
        let dir = LTXFixture.temporaryDirectory()
        var paths = try LTXFixture.writeChain(files, in: dir)
        paths.remove(at: 2)
        LTXFixture.expectError("\(paths[2]): gap: min TXID 0000000000000004 does not follow max TXID 0000000000000002") {
            _ = try LTXChainVerifier().verify(files: paths)
        }
    }

    @Test("a duplicate range is an overlap")
    func overlap() throws {
        let (files, _) = try Self.chain()
        let dir = LTXFixture.temporaryDirectory()
        var paths = try LTXFixture.writeChain(files, in: dir)
        try LTXFixture.write(files[1], to: dir + "/copy.ltx")
        paths.append(dir + "/copy.ltx")
        LTXFixture.expectError("overlap") { _ = try LTXChainVerifier().verify(files: paths) }
    }

    @Test("a checksum break names the file and both checksums")
    func checksumBreak() throws {
        let (files, _) = try Self.chain()
        // A different history whose TXID 3 starts from another state.
        var other = LTXFixture.Database(pageSize: 512)
        _ = try other.snapshot(pageCount: 4, seed: 999)
        _ = try other.commit([2: LTXFixture.page(size: 512, seed: 1)])
        let foreign = try other.commit([7: LTXFixture.page(size: 512, seed: 8)])
        let dir = LTXFixture.temporaryDirectory()
        let paths = try LTXFixture.writeChain(Array(files[0..<2]) + [foreign], in: dir)
        LTXFixture.expectError("\(paths[2]): pre-apply checksum") { _ = try LTXChainVerifier().verify(directory: dir) }
        LTXFixture.expectError("does not match post-apply checksum") { _ = try LTXChainVerifier().verify(directory: dir) }
    }

    @Test("a corrupt file in the middle is named")
    func corruptMiddle() throws {
        let (files, _) = try Self.chain()
        let dir = LTXFixture.temporaryDirectory()
        var corrupt = files
        corrupt[2][150] ^= 0x55
        let paths = try LTXFixture.writeChain(corrupt, in: dir)
        let error = LTXFixture.error { _ = try LTXChainVerifier().verify(directory: dir) }
        #expect(error?.description.hasPrefix(paths[2] + ": ") == true, "\(String(describing: error))")
        guard case .inFile(let file, _) = error else {
            Issue.record("expected .inFile, got \(String(describing: error))")
            return
        }
        #expect(file == paths[2])
    }

    @Test("the chain must start with a snapshot unless told otherwise")
    func snapshotStart() throws {
        let (files, db) = try Self.chain()
        let dir = LTXFixture.temporaryDirectory()
        let paths = try LTXFixture.writeChain(Array(files[2...]), in: dir)
        LTXFixture.expectError("\(paths[0]): the chain must start with a snapshot") {
            _ = try LTXChainVerifier().verify(directory: dir)
        }
        let summary = try LTXChainVerifier(requireSnapshotStart: false).verify(directory: dir)
        #expect(summary.firstTXID == TXID(3) && summary.lastTXID == TXID(5) && summary.postApplyChecksum == db.checksum)
    }

    @Test("a file name that disagrees with its header is rejected")
    func misnamed() throws {
        let (files, _) = try Self.chain()
        let dir = LTXFixture.temporaryDirectory()
        let path = dir + "/" + LTXFileName(minTXID: TXID(1), maxTXID: TXID(2)).description
        try LTXFixture.write(files[0], to: path)
        LTXFixture.expectError("name says TXIDs 0000000000000001-0000000000000002 but the header says") {
            _ = try LTXChainVerifier().verify(directory: dir)
        }
    }

    @Test("an empty directory and a missing directory are errors")
    func emptyOrMissing() {
        let dir = LTXFixture.temporaryDirectory()
        LTXFixture.expectError("no LTX files") { _ = try LTXChainVerifier().verify(directory: dir) }
        LTXFixture.expectError("opendir \(dir)/missing: No such file or directory") {
            _ = try LTXChainVerifier().verify(directory: dir + "/missing")
        }
    }
}
