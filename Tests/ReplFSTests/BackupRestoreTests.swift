import Foundation
import Testing

@testable import ReplFS

/// A backup archive written by hand, as the archiver lays it out: LTX files
/// with the noChecksum flag (Litestream's), each file's mtime its header's
/// timestamp, a database history of six transactions on 512-byte pages.
struct ArchiveFixture {
    static let pageSize = 512
    /// The time of TXID 1; each transaction is a second after the one before.
    static let baseTime: Int64 = 1_796_637_600_123

    let root = LTXFixture.temporaryDirectory()
    var archive: BackupArchive { BackupArchive(root: root) }

    /// The pages each transaction writes (page number → content).
    static let transactions: [[UInt32: [UInt8]]] = [
        [1: page(11), 2: page(12), 3: page(13)],
        [2: page(22)],
        [4: page(34)],
        [1: page(41)],
        [3: page(53)],
        [5: page(65)],
    ]

    static func page(_ seed: UInt64) -> [UInt8] { LTXFixture.page(size: pageSize, seed: seed) }

    static func time(_ txid: UInt64) -> Int64 { baseTime + Int64(txid - 1) * 1000 }

    /// The database's pages after `txid`.
    static func state(_ txid: UInt64) -> [[UInt8]] {
        var pages: [[UInt8]] = []
        for changes in transactions.prefix(Int(txid)) {
            for (pgno, content) in changes {
                while pages.count < Int(pgno) { pages.append([UInt8](repeating: 0, count: pageSize)) }
                pages[Int(pgno) - 1] = content
            }
        }
        return pages
    }

    static func checksum(_ txid: UInt64) -> Checksum { LTXFixture.databaseChecksum(state(txid), pageSize: pageSize) }

    /// The LTX file of `range` as a compaction writes it: the final version
    /// of every page changed in the range (every page from TXID 1).
    static func encode(_ range: ClosedRange<UInt64>) throws -> [UInt8] {
        let final = state(range.upperBound)
        let changed = range.lowerBound == 1 ? Set(1...UInt32(final.count))
            : Set(transactions[Int(range.lowerBound - 1)..<Int(range.upperBound)].flatMap(\.keys))
        let header = LTXHeader(flags: .noChecksum, pageSize: UInt32(pageSize), commit: UInt32(final.count),
                               minTXID: TXID(range.lowerBound), maxTXID: TXID(range.upperBound), timestamp: time(range.upperBound))
        var encoder = try LTXEncoder(header: header)
        for pgno in changed.sorted() {
            try encoder.append(PageNumber(pgno), page: final[Int(pgno) - 1])
        }
        try encoder.finish(postApplyChecksum: .zero)
        return encoder.takeBytes()
    }

    /// Archives `range` of `database` at `level`, durably, mtime its timestamp.
    @discardableResult
    func write(_ database: String, level: Int, _ range: ClosedRange<UInt64>) throws -> String {
        _ = Syscall.makeDirectories(archive.levelDirectory(database, level: level))
        let path = archive.path(database, level: level, LTXFileName(minTXID: TXID(range.lowerBound), maxTXID: TXID(range.upperBound)))
        try DurableFile.write(Self.encode(range), to: path, timestamp: Self.time(range.upperBound)).get()
        return path
    }

    /// app.db as an archive holds it after compactions: every level-0 file,
    /// a snapshot at 3 and a level-1 compaction of 2-5 that overlaps it.
    func writeApp() throws {
        for txid in UInt64(1)...6 { try write("app.db", level: 0, txid...txid) }
        try write("app.db", level: 9, 1...3)
        try write("app.db", level: 1, 2...5)
    }

    /// Records the database checksum of `txids` (`checksum` overrides them).
    func recordPositions(_ database: String, _ txids: [UInt64], checksum: Checksum? = nil) throws {
        _ = Syscall.makeDirectories(archive.replicaDirectory(database) + "/" + BackupArchive.metadataName)
        let entries = txids.map { ArchivePositions.Entry(txid: TXID($0), checksum: checksum ?? Self.checksum($0), timestamp: Self.time($0)) }
        try ArchivePositions(path: archive.positionsPath(database)).append(entries).get()
    }

    /// Archives a plain file version.
    func writeVersion(_ path: String, _ version: PlainFileVersion, content: String = "") throws {
        let directory = PlainFileVersion.directory(of: path, in: archive)
        _ = Syscall.makeDirectories(directory)
        try DurableFile.write(Array(content.utf8), to: directory + "/" + version.name, timestamp: version.timestamp).get()
    }

    /// Whether a temporary file was left in the fixture's directory.
    var hasTemporaryFiles: Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).contains { DurableFile.isTemporary($0) }
    }

    func exists(_ path: String) -> Bool {
        if case .success = Syscall.lstat(at: AT_FDCWD, path) { return true }
        return false
    }

    /// Runs `body`, expecting a `RestoreError` with `code` whose message contains `fragment`.
    static func expectError(
        _ code: RestoreError.Code, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected a RestoreError", sourceLocation: sourceLocation)
        } catch let error as RestoreError {
            #expect(error.code == code, "got: \(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains(fragment), "got: \(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected a RestoreError, got \(error)", sourceLocation: sourceLocation)
        }
    }
}

@Suite("Backup restore")
struct BackupRestoreTests {
    /// A listed file with no disk behind it, for the planner.
    static func file(_ level: Int, _ min: UInt64, _ max: UInt64, time: Int64? = nil) -> BackupArchive.File {
        let name = LTXFileName(minTXID: TXID(min), maxTXID: TXID(max))
        return BackupArchive.File(level: level, name: name, path: "/archive/db/ltx/\(level)/\(name)", size: 100, timestamp: time ?? Int64(max) * 1000)
    }

    static func describe(_ plan: RestorePlan) -> [String] { plan.files.map { "L\($0.level) \($0.minTXID.rawValue)-\($0.maxTXID.rawValue)" } }

    // MARK: plans

    @Test("the plan starts at the newest snapshot and takes the file reaching furthest, overlapping or not")
    func planOverlap() throws {
        let files = [Self.file(9, 1, 50), Self.file(9, 1, 120), Self.file(1, 100, 130), Self.file(0, 121, 121),
                     Self.file(0, 130, 130), Self.file(0, 131, 131)]
        let plan = try RestorePlan(database: "db", files: files, target: .latest)
        #expect(Self.describe(plan) == ["L9 1-120", "L1 100-130", "L0 131-131"])
        #expect(plan.txid == TXID(131) && plan.timestamp == 131_000)
    }

    @Test("with no snapshot the plan starts from a file from TXID 1 at any level; ties go to the higher level")
    func planWithoutSnapshot() throws {
        let files = [Self.file(0, 1, 1), Self.file(0, 2, 2), Self.file(1, 1, 2), Self.file(2, 1, 2), Self.file(0, 3, 3)]
        #expect(Self.describe(try RestorePlan(database: "db", files: files, target: .latest)) == ["L2 1-2", "L0 3-3"])
        Self.expectPlanError(.noStart, "no snapshot of db at or before TXID 0000000000000005 to start from") {
            _ = try RestorePlan(database: "db", files: [Self.file(0, 4, 4), Self.file(0, 5, 5)], target: .txid(TXID(5)))
        }
    }

    @Test("a TXID target takes only files ending at or before it and must end on it")
    func planTXID() throws {
        let files = [Self.file(9, 1, 100), Self.file(1, 101, 130), Self.file(0, 121, 121), Self.file(0, 122, 122)]
        #expect(Self.describe(try RestorePlan(database: "db", files: files, target: .txid(TXID(130)))) == ["L9 1-100", "L1 101-130"])
        Self.expectPlanError(.txidUnavailable, "no backup of db ends at TXID 0000000000000078: the nearest restorable TXID before it is 0000000000000064") {
            _ = try RestorePlan(database: "db", files: files, target: .txid(TXID(120)))
        }
        Self.expectPlanError(.noBackup, "no backup of db at or before TXID 0000000000000032; the oldest state it can restore is TXID 0000000000000064 of 1970-01-01T00:01:40.000Z") {
            _ = try RestorePlan(database: "db", files: files, target: .txid(TXID(50)))
        }
    }

    @Test("a time target takes files at or before it")
    func planTimestamp() throws {
        let files = [Self.file(9, 1, 10), Self.file(0, 11, 11), Self.file(1, 11, 12), Self.file(0, 12, 12)]
        #expect(try RestorePlan(database: "db", files: files, target: .timestamp(12_000)).txid == TXID(12))
        #expect(Self.describe(try RestorePlan(database: "db", files: files, target: .timestamp(11_999))) == ["L9 1-10", "L0 11-11"])
        #expect(try RestorePlan(database: "db", files: files, target: .timestamp(10_000)).txid == TXID(10))
        Self.expectPlanError(.noBackup, "no backup of db at or before 1970-01-01T00:00:09.999Z") {
            _ = try RestorePlan(database: "db", files: files, target: .timestamp(9_999))
        }
    }

    @Test("a gap below the newest file is refused, naming where the chain stops")
    func planGap() throws {
        let files = [Self.file(9, 1, 100), Self.file(0, 101, 101), Self.file(0, 103, 103)]
        Self.expectPlanError(.nonContiguous, "non-contiguous: nothing follows TXID 0000000000000065 in the backup of db, the next file starts at TXID 0000000000000067") {
            _ = try RestorePlan(database: "db", files: files, target: .latest)
        }
        // Before the gap, the same archive restores.
        #expect(try RestorePlan(database: "db", files: files, target: .timestamp(102_000)).txid == TXID(101))
        Self.expectPlanError(.noBackup, "no backup of db") { _ = try RestorePlan(database: "db", files: [], target: .latest) }
    }

    static func expectPlanError(
        _ code: RestoreError.Code, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        ArchiveFixture.expectError(code, fragment, sourceLocation: sourceLocation, body)
    }

    // MARK: restoring databases

    @Test("restores the newest state, a TXID and a time from a snapshot, a compaction and level-0 files")
    func restore() throws {
        let fixture = ArchiveFixture()
        try fixture.writeApp()
        let restore = ArchiveRestore(archive: fixture.archive)
        let output = fixture.root + "/out.db"

        let latest = try restore.restore("app.db", to: output)
        #expect(try LTXFixture.read(output) == ArchiveFixture.state(6).flatMap { $0 })
        #expect(latest == RestoreResult(name: "app.db", output: output, kind: .database(txid: TXID(6)), timestamp: ArchiveFixture.time(6),
                                        fileCount: 3, verified: false))
        #expect(latest.description == "restored app.db to TXID 0000000000000006 (2026-12-07T10:00:05.123Z) from 3 files, "
            + "not verified against recorded checksums (the archive has none)")
        #expect(!fixture.hasTemporaryFiles)

        for (target, txid) in [(RestoreTarget.txid(TXID(4)), UInt64(4)), (.timestamp(ArchiveFixture.time(5) - 1), 4),
                               (.timestamp(ArchiveFixture.time(5)), 5), (.timestamp(ArchiveFixture.time(3) - 1), 2)] {
            let result = try restore.restore("app.db", to: output, target: target, force: true)
            #expect(result.txid == TXID(txid), "\(target)")
            #expect(try LTXFixture.read(output) == ArchiveFixture.state(txid).flatMap { $0 }, "\(target)")
        }
        ArchiveFixture.expectError(.noBackup, "no backup of app.db at or before 2026-12-07T10:00:00.122Z") {
            _ = try restore.restore("app.db", to: output, target: .timestamp(ArchiveFixture.time(1) - 1), force: true)
        }
    }

    @Test("the rebuilt database is checked against the recorded checksums")
    func verification() throws {
        let fixture = ArchiveFixture()
        try fixture.writeApp()
        let restore = ArchiveRestore(archive: fixture.archive)
        let output = fixture.root + "/out.db"

        try fixture.recordPositions("app.db", [1, 2, 3, 4, 5, 6])
        let result = try restore.restore("app.db", to: output)
        #expect(result.verified && result.description.hasSuffix("from 3 files, checksums verified"))
        #expect(try LTXFixture.read(output) == ArchiveFixture.state(6).flatMap { $0 })

        // Another entry for TXID 6 (a node that recorded it and then lost
        // the role before its file appeared) does not hide the right one.
        try fixture.recordPositions("app.db", [6], checksum: ArchiveFixture.checksum(5))
        #expect(try restore.restore("app.db", to: fixture.root + "/again.db").verified)

        // No entry with the rebuilt checksum: refused, nothing written.
        let wrong = ArchiveFixture()
        try wrong.writeApp()
        try wrong.recordPositions("app.db", [1, 2, 3, 4, 5])
        try wrong.recordPositions("app.db", [6], checksum: ArchiveFixture.checksum(5))
        ArchiveFixture.expectError(.checksumMismatch, "the database rebuilt at TXID 0000000000000006 of app.db has checksum \(ArchiveFixture.checksum(6))") {
            _ = try ArchiveRestore(archive: wrong.archive).restore("app.db", to: wrong.root + "/wrong.db")
        }
        #expect(!wrong.exists(wrong.root + "/wrong.db") && !wrong.hasTemporaryFiles)

        // A journal with no entry for the TXID reached is refused too.
        let other = ArchiveFixture()
        try other.writeApp()
        try other.recordPositions("app.db", [3, 5])
        ArchiveFixture.expectError(.checksumMismatch, "no checksum is recorded for TXID 0000000000000006 of app.db") {
            _ = try ArchiveRestore(archive: other.archive).restore("app.db", to: other.root + "/out.db")
        }
        #expect(!other.exists(other.root + "/out.db"))
        #expect(try ArchiveRestore(archive: other.archive).restore("app.db", to: other.root + "/out.db", target: .txid(TXID(5))).verified)
    }

    @Test("an existing output is refused without force and replaced with it; a WAL beside it always refused")
    func existingOutput() throws {
        let fixture = ArchiveFixture()
        try fixture.writeApp()
        let restore = ArchiveRestore(archive: fixture.archive)
        let output = fixture.root + "/out.db"
        try LTXFixture.write(Array("precious".utf8), to: output)

        ArchiveFixture.expectError(.outputExists, "\(output): exists: refusing to replace it (--force replaces it)") {
            _ = try restore.restore("app.db", to: output)
        }
        #expect(try LTXFixture.read(output) == Array("precious".utf8))
        _ = try restore.restore("app.db", to: output, force: true)
        #expect(try LTXFixture.read(output) == ArchiveFixture.state(6).flatMap { $0 })

        try LTXFixture.write([1, 2, 3], to: output + "-wal")
        ArchiveFixture.expectError(.outputExists, "\(output)-wal: exists: SQLite would apply it") {
            _ = try restore.restore("app.db", to: output, force: true)
        }
    }

    @Test("a damaged archived file is refused, naming it, and nothing is written")
    func damagedFile() throws {
        let fixture = ArchiveFixture()
        try fixture.writeApp()
        let damaged = fixture.archive.path("app.db", level: 1, LTXFileName(minTXID: TXID(2), maxTXID: TXID(5)))
        var bytes = try LTXFixture.read(damaged)
        bytes[bytes.count - 1] ^= 1
        try LTXFixture.write(bytes, to: damaged)
        ArchiveFixture.expectError(.corrupt, "\(damaged): file checksum mismatch") {
            _ = try ArchiveRestore(archive: fixture.archive).restore("app.db", to: fixture.root + "/out.db")
        }
        #expect(!fixture.exists(fixture.root + "/out.db") && !fixture.hasTemporaryFiles)
    }

    @Test("overlapping files chain only when allowed, and only when they reach further")
    func overlapOption() throws {
        let fixture = ArchiveFixture()
        try fixture.writeApp()
        let paths = [fixture.archive.path("app.db", level: 9, LTXFileName(minTXID: TXID(1), maxTXID: TXID(3))),
                     fixture.archive.path("app.db", level: 1, LTXFileName(minTXID: TXID(2), maxTXID: TXID(5)))]
        LTXFixture.expectError("overlap: min TXID 0000000000000002 does not follow") { _ = try LTXChainVerifier().verify(files: paths) }
        #expect(try LTXChainVerifier(allowOverlap: true).verify(files: paths).lastTXID == TXID(5))
        let summary = try LTXRebuilder(allowOverlap: true).rebuild(files: paths, into: fixture.root + "/out.db")
        #expect(summary.databaseChecksum == ArchiveFixture.checksum(5) && summary.postApplyChecksum == .zero)
        let inside = fixture.archive.path("app.db", level: 0, LTXFileName(minTXID: TXID(3), maxTXID: TXID(3)))
        LTXFixture.expectError("overlap adds nothing") { _ = try LTXChainVerifier(allowOverlap: true).verify(files: [paths[0], inside]) }
    }

    // MARK: plain files

    @Test("a plain file is restored as its newest version at or before the time, with its mode; a removal is reported")
    func plainFile() throws {
        let fixture = ArchiveFixture()
        try fixture.writeVersion("keys/noise.key", PlainFileVersion(timestamp: 1000, sequence: 0, change: .file(mode: 0o600)), content: "v1")
        try fixture.writeVersion("keys/noise.key", PlainFileVersion(timestamp: 2000, sequence: 0, change: .file(mode: 0o640)), content: "v2")
        try fixture.writeVersion("keys/noise.key", PlainFileVersion(timestamp: 3000, sequence: 0, change: .removed))
        let restore = ArchiveRestore(archive: fixture.archive)
        let output = fixture.root + "/noise.key"

        ArchiveFixture.expectError(.removed, "keys/noise.key was removed at 1970-01-01T00:00:03.000Z") {
            _ = try restore.restore("keys/noise.key", to: output)
        }
        let result = try restore.restore("keys/noise.key", to: output, target: .timestamp(2999))
        #expect(result == RestoreResult(name: "keys/noise.key", output: output, kind: .plainFile(mode: 0o640), timestamp: 2000,
                                        fileCount: 1, verified: false))
        #expect(try LTXFixture.read(output) == Array("v2".utf8))
        let info = try Syscall.stat(output).get()
        #expect(info.st_mode & 0o7777 == 0o640 && info.st_mtim.tv_sec == 2)

        _ = try restore.restore("keys/noise.key", to: output, target: .timestamp(1000), force: true)
        #expect(try LTXFixture.read(output) == Array("v1".utf8) && (try Syscall.stat(output).get()).st_mode & 0o7777 == 0o600)
        ArchiveFixture.expectError(.noBackup, "no backup of keys/noise.key at or before 1970-01-01T00:00:00.999Z") {
            _ = try restore.restore("keys/noise.key", to: output, target: .timestamp(999), force: true)
        }
        ArchiveFixture.expectError(.invalidTarget, "keys/noise.key is a plain file") {
            _ = try restore.restore("keys/noise.key", to: output, target: .txid(TXID(1)), force: true)
        }
        ArchiveFixture.expectError(.notArchived, "other.db is not in the archive at \(fixture.root) (databases: none; plain files: keys/noise.key)") {
            _ = try restore.restore("other.db", to: output, force: true)
        }
        ArchiveFixture.expectError(.invalidTarget, "\"../x\" is not a name in an archive") {
            _ = try restore.restore("../x", to: output, force: true)
        }
    }

    // MARK: listing

    @Test("the listing gives the restorable range, snapshots, levels and plain files")
    func listing() throws {
        let fixture = ArchiveFixture()
        try fixture.writeApp()
        try fixture.recordPositions("app.db", [1, 2, 3, 4, 5, 6])
        try fixture.write("gap.db", level: 9, 1...3)
        try fixture.write("gap.db", level: 0, 5...5)
        try fixture.writeVersion("noise.key", PlainFileVersion(timestamp: 1000, sequence: 0, change: .file(mode: 0o600)), content: "k")
        try fixture.writeVersion("noise.key", PlainFileVersion(timestamp: 3000, sequence: 0, change: .removed))

        let listing = BackupListing(archive: fixture.archive)
        let sizes = fixture.archive.files(of: "app.db")
        let snapshot = sizes.first { $0.level == 9 }!
        #expect(listing.databases.map(\.name) == ["app.db", "gap.db"])
        let app = listing.databases[0]
        #expect(app.firstTXID == 1 && app.lastTXID == 6)
        #expect(app.oldestTime == "2026-12-07T10:00:00.123Z" && app.newestTime == "2026-12-07T10:00:05.123Z")
        #expect(app.snapshots == [BackupListing.Snapshot(txid: 3, time: "2026-12-07T10:00:02.123Z", bytes: snapshot.size)])
        #expect(app.levels.map { [$0.level, $0.files] } == [[0, 6], [1, 1], [9, 1]])
        #expect(app.totalBytes == sizes.reduce(0) { $0 + $1.size } && app.checksumsRecorded && app.problem == nil)

        let gap = listing.databases[1]
        #expect(gap.firstTXID == 3 && gap.lastTXID == 3 && !gap.checksumsRecorded)
        #expect(gap.problem?.contains("non-contiguous: nothing follows TXID 0000000000000003") == true)
        #expect(listing.plainFiles == [BackupListing.PlainFile(path: "noise.key", versions: 2, firstTime: "1970-01-01T00:00:01.000Z",
                                                                lastTime: "1970-01-01T00:00:03.000Z", removed: true)])

        let json = String(decoding: try JSONEncoder().encode(listing), as: UTF8.self)
        for key in ["first_txid", "last_txid", "oldest_time", "newest_time", "total_bytes", "checksums_recorded", "plain_files", "first_time"] {
            #expect(json.contains("\"\(key)\""), "\(key)")
        }
        #expect(try JSONDecoder().decode(BackupListing.self, from: Data(json.utf8)) == listing)
        #expect(listing.summary.contains("app.db: TXID 0000000000000001..0000000000000006, 2026-12-07T10:00:00.123Z .. 2026-12-07T10:00:05.123Z"))
        #expect(listing.summary.contains("noise.key: plain file, 2 versions, 1970-01-01T00:00:01.000Z .. 1970-01-01T00:00:03.000Z, removed"))
    }

    // MARK: arguments

    @Test("RFC 3339 times parse with or without a fraction, with Z or an offset, to the millisecond")
    func rfc3339() {
        #expect(RFC3339Time.milliseconds(parsing: "2026-12-07T10:00:00.123Z") == 1_796_637_600_123)
        #expect(RFC3339Time.milliseconds(parsing: "2026-12-07T11:30:00.123+01:30") == 1_796_637_600_123)
        #expect(RFC3339Time.milliseconds(parsing: "2026-12-07T10:00:00.1239Z") == 1_796_637_600_123)
        #expect(RFC3339Time.milliseconds(parsing: "2026-12-07T10:00:00.5Z") == 1_796_637_600_500)
        #expect(RFC3339Time.milliseconds(parsing: "2000-02-29T22:59:59-01:00") == 951_868_799_000)
        #expect(RFC3339Time.milliseconds(parsing: "1970-01-01T00:00:00Z") == 0)
        for bad in ["2026-02-29T00:00:00Z", "2026-12-07 10:00:00Z", "2026-12-07T10:00:00", "2026-12-07T10:00:00.Z", "2026-12-07T24:00:00Z",
                    "2026-12-07T10:00:00+0100", "2026-12-07T10:00:00Zjunk", ""] {
            #expect(RFC3339Time.milliseconds(parsing: bad) == nil, "\(bad)")
        }
        #expect(RFC3339Time.format(milliseconds: 1_796_637_600_123) == "2026-12-07T10:00:00.123Z")
        #expect(RFC3339Time.format(milliseconds: -1) == "1969-12-31T23:59:59.999Z")
        for ms: Int64 in [0, 951_868_799_000, 4_102_444_800_000, -86_400_001] {
            #expect(RFC3339Time.milliseconds(parsing: RFC3339Time.format(milliseconds: ms)) == ms)
        }
    }

    @Test("--txid takes 16 hex digits, 0x hex or decimal")
    func txidArgument() {
        #expect(RestoreTarget.txid(parsing: "0000000000000123") == TXID(0x123))
        #expect(RestoreTarget.txid(parsing: "0x1f") == TXID(31))
        #expect(RestoreTarget.txid(parsing: "291") == TXID(291))
        for bad in ["0", "0000000000000000", "-1", "12ab", "00000000000000zz", ""] {
            #expect(RestoreTarget.txid(parsing: bad) == nil, "\(bad)")
        }
    }
}
