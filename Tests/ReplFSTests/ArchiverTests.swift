import Foundation
import Logging
import Testing

@testable import ReplFS

/// The archiver against a store with no mount: SQLite commits through the
/// store's VFS, the archive in a temporary directory.
@Suite("Archiver")
struct ArchiverTests {
    static func settings(_ path: String) -> Archiver.Settings {
        Archiver.Settings(path: path, retention: .seconds(3600), snapshotInterval: .seconds(86_400))
    }

    /// Runs an archiver until the archive holds `database`'s position.
    static func archiveUntilCaughtUp(_ scratch: ScratchStore, _ archive: String, _ database: String = "app.db") throws -> Archiver {
        let archiver = Archiver(settings: settings(archive), store: scratch.store, feed: ChangeFeed(), logger: Logger(label: "test"))
        archiver.start()
        let deadline = Date().addingTimeInterval(20)
        let target = try #require(scratch.store.position(of: database)).txid.rawValue
        while archiver.status.databases.first(where: { $0.name == database })?.archivedTXID != target {
            if Date() > deadline {
                archiver.stop()
                throw Failure("the archive did not catch up: \(archiver.status)")
            }
            usleep(20_000)
        }
        return archiver
    }

    struct Failure: Error, CustomStringConvertible { var description: String; init(_ text: String) { description = text } }

    @Test("a snapshot of another history ending beyond where the archive is continued (a lost primary's, taken ahead of its level 0) is moved aside, and restores give this node's database")
    func foreignSnapshotMovedAside() throws {
        let scratch = try ScratchStore()
        let archive = scratch.root + "/archive"
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        let db = try scratch.vfs.open("app.db")
        try db.execute("PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        for i in 1...5 { try db.execute("INSERT INTO t(v) VALUES ('first \(i)')") }
        Self.stop(try Self.archiveUntilCaughtUp(scratch, archive))
        let continued = try #require(scratch.store.position(of: "app.db")).txid

        // Another node's snapshot, three transactions further, of content
        // this node never had; its checksum recorded as that node would.
        let foreignTXID = TXID(continued.rawValue + 3)
        let page = [UInt8](repeating: 0x5A, count: 4096)
        var encoder = try LTXEncoder(
            header: LTXHeader(flags: .noChecksum, pageSize: 4096, commit: 1, minTXID: TXID(1), maxTXID: foreignTXID, timestamp: WallClock.milliseconds()),
            pageEncoding: .lz4Frame)
        try encoder.append(PageNumber(1), page: page)
        try encoder.finish(postApplyChecksum: .zero)
        let layout = BackupArchive(root: archive)
        let foreign = layout.path("app.db", level: BackupArchive.snapshotLevel, LTXFileName(minTXID: TXID(1), maxTXID: foreignTXID))
        try DurableFile.write(encoder.takeBytes(), to: foreign, timestamp: WallClock.milliseconds()).get()
        try ArchivePositions(path: layout.positionsPath("app.db"))
            .append([.init(txid: foreignTXID, checksum: Checksum.emptyDatabase.replacingPage(old: .zero, new: page.withUnsafeBytes { .page(PageNumber(1), $0) }), timestamp: 0)]).get()

        // This node goes on past it, then archives again.
        for i in 1...5 { try db.execute("INSERT INTO t(v) VALUES ('second \(i)')") }
        Self.stop(try Self.archiveUntilCaughtUp(scratch, archive))

        #expect(!FileManager.default.fileExists(atPath: foreign), "the foreign snapshot is still where a restore starts from")
        let aside = (try? FileManager.default.subpathsOfDirectory(atPath: layout.asideDirectory("app.db"))) ?? []
        #expect(aside.contains { $0.hasSuffix("9-\(LTXFileName(minTXID: TXID(1), maxTXID: foreignTXID))") }, "kept aside: \(aside)")
        let restored = scratch.root + "/restored.db"
        let result = try ArchiveRestore(archive: layout).restore("app.db", to: restored)
        #expect(result.verified)
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: restored))) == (try scratch.fileBytes("app.db")))
    }

    static func stop(_ archiver: Archiver) { archiver.stop() }
}
