import Testing

@testable import ReplFS

@Suite("LTX rebuilder")
struct LTXRebuilderTests {
    @Test("rebuilding a chain yields the expected database bytes", arguments: [512, 4096])
    func rebuild(pageSize: Int) throws {
        let (files, db) = try LTXChainVerifierTests.chain(pageSize: pageSize)
        let dir = LTXFixture.temporaryDirectory()
        _ = try LTXFixture.writeChain(files, in: dir)
        let output = dir + "/rebuilt.db"
        try LTXFixture.write(LTXFixture.randomBytes(50_000, seed: 1), to: output)  // stale content is replaced
        let summary = try LTXRebuilder().rebuild(directory: dir, into: output)
        #expect(try LTXFixture.read(output) == db.bytes)
        #expect(summary.postApplyChecksum == db.checksum)
        #expect(summary.commit == 6 && summary.lastTXID == TXID(5) && summary.fileCount == 5)
    }

    @Test("a deletion file truncates the database to nothing")
    func deletion() throws {
        var (files, db) = try LTXChainVerifierTests.chain()
        files.append(try db.commit([:], size: 0))
        #expect(db.checksum == .emptyDatabase)
        let dir = LTXFixture.temporaryDirectory()
        _ = try LTXFixture.writeChain(files, in: dir)
        let summary = try LTXRebuilder().rebuild(directory: dir, into: dir + "/out.db")
        #expect(try LTXFixture.read(dir + "/out.db").isEmpty)
        #expect(summary.postApplyChecksum == .emptyDatabase && summary.commit == 0)
    }

    @Test("applying a tail of the chain onto an existing database")
    func applyOntoExisting() throws {
        var db = LTXFixture.Database(pageSize: 1024)
        _ = try db.snapshot(pageCount: 3, seed: 1)
        let base = db.bytes
        let tail = [try db.commit([2: LTXFixture.page(size: 1024, seed: 2)]),
                    try db.commit([6: LTXFixture.page(size: 1024, seed: 3)])]
        let dir = LTXFixture.temporaryDirectory()
        let paths = try LTXFixture.writeChain(tail, in: dir)
        let output = dir + "/out.db"

        try LTXFixture.write(base, to: output)
        LTXFixture.expectError("the chain must start with a snapshot") { _ = try LTXRebuilder().rebuild(files: paths, into: output) }
        _ = try LTXRebuilder(requireSnapshotStart: false).rebuild(files: paths, into: output)
        #expect(try LTXFixture.read(output) == db.bytes)

        // The wrong base database is caught by the pre-apply checksum.
        try LTXFixture.write(LTXFixture.randomBytes(3 * 1024, seed: 9), to: output)
        LTXFixture.expectError("\(paths[0]): pre-apply checksum mismatch") {
            _ = try LTXRebuilder(requireSnapshotStart: false).rebuild(files: paths, into: output)
        }
    }

    @Test("a corrupt file is named and a chain break is reported")
    func errors() throws {
        let (files, _) = try LTXChainVerifierTests.chain()
        let dir = LTXFixture.temporaryDirectory()
        var corrupt = files
        corrupt[3][corrupt[3].count - 1] ^= 1
        let paths = try LTXFixture.writeChain(corrupt, in: dir)
        LTXFixture.expectError("\(paths[3]): file checksum mismatch") {
            _ = try LTXRebuilder().rebuild(files: paths, into: dir + "/out.db")
        }
        LTXFixture.expectError("\(paths[2]): gap") {
            _ = try LTXRebuilder().rebuild(files: [paths[0], paths[2]], into: dir + "/out.db")
        }
    }
}
