import Foundation
import Testing

@testable import ReplFS

/// Cross-checks the Swift encoder and rebuilder against the independent
/// Python decoder in Tests/tools/ltx_reference.py.
@Suite("LTX Python reference checker", .enabled(if: LTXFixture.referenceCheckerAvailable,
                                                "python3 with the lz4 module is not available (pip install lz4)"))
struct LTXReferenceCheckerTests {
    @Test("Swift-encoded files verify with the reference; corrupted copies do not")
    func verify() throws {
        let dir = LTXFixture.temporaryDirectory()
        var paths = try LTXFixture.writeChain(try LTXChainVerifierTests.chain(pageSize: 4096).0, in: dir)

        var small = LTXFixture.Database(pageSize: 512)
        try LTXFixture.write(try small.snapshot(pageCount: 3, seed: 3), to: dir + "/small-snapshot.ltx")
        try LTXFixture.write(try small.commit([:], size: 0), to: dir + "/deletion.ltx")
        let lock = PageNumber.lockPage(pageSize: 65536).rawValue
        try LTXFixture.write(try LTXFixture.encode(
            LTXHeader(pageSize: 65536, commit: lock + 1, minTXID: TXID(9), maxTXID: TXID(9),
                      preApplyChecksum: Checksum(0x8000_0000_0000_0001)),
            pages: [(lock - 1, LTXFixture.page(size: 65536, seed: 1)), (lock + 1, LTXFixture.page(size: 65536, seed: 2))],
            post: Checksum(0x8000_0000_0000_0002)), to: dir + "/lock-page.ltx")
        try LTXFixture.write(try LTXFixture.encode(
            LTXHeader(flags: .noChecksum, pageSize: 1024, commit: 1, minTXID: TXID(4), maxTXID: TXID(4)),
            pages: [(1, LTXFixture.page(size: 1024, seed: 5))], post: .zero), to: dir + "/no-checksum.ltx")
        paths += ["small-snapshot.ltx", "deletion.ltx", "lock-page.ltx", "no-checksum.ltx"].map { dir + "/" + $0 }

        let good = try LTXFixture.python([LTXFixture.referenceScript, "verify"] + paths)
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output == "ok\n")

        var corrupt = try LTXFixture.read(paths[2])
        corrupt[corrupt.count / 2] ^= 0x10
        try LTXFixture.write(corrupt, to: dir + "/corrupt.ltx")
        let bad = try LTXFixture.python([LTXFixture.referenceScript, "verify", paths[0], dir + "/corrupt.ltx"])
        #expect(bad.status != 0)
        #expect(bad.output.hasPrefix(dir + "/corrupt.ltx: "), "\(bad.output)")
    }

    @Test("the reference apply and checksum agree with the Swift rebuilder")
    func apply() throws {
        let (files, db) = try LTXChainVerifierTests.chain(pageSize: 1024)
        let dir = LTXFixture.temporaryDirectory()
        let paths = try LTXFixture.writeChain(files, in: dir)
        let summary = try LTXRebuilder().rebuild(files: paths, into: dir + "/swift.db")

        let applied = try LTXFixture.python([LTXFixture.referenceScript, "apply", dir + "/python.db"] + paths)
        #expect(applied.status == 0, "\(applied.output)")
        #expect(try LTXFixture.read(dir + "/python.db") == LTXFixture.read(dir + "/swift.db"))
        #expect(try LTXFixture.read(dir + "/swift.db") == db.bytes)

        let checksum = try LTXFixture.python([LTXFixture.referenceScript, "checksum", dir + "/swift.db", "1024"])
        #expect(checksum.output == summary.postApplyChecksum.description + "\n")

        // Applying out of order fails the reference's pre-apply check.
        let wrong = try LTXFixture.python([LTXFixture.referenceScript, "apply", dir + "/wrong.db", paths[0], paths[2]])
        #expect(wrong.status != 0)
        #expect(wrong.output.contains("pre-apply checksum mismatch"), "\(wrong.output)")
    }
}
