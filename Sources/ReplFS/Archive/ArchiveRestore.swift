#if canImport(Glibc)
import Glibc
#endif

/// `replfsd restore`: a database (or a plain file) out of a backup archive,
/// as of a target.
///
/// A database is planned (``RestorePlan``), rebuilt from its files in order
/// under a temporary name beside the output (`OUT.tmp`), each file's CRC
/// checked as it is decoded, and the result's checksum compared with the
/// one the archiver recorded for the TXID reached (``ArchivePositions``)
/// before it is synced and renamed into place. Whatever fails, nothing is
/// left at the output: a partial or unchecked database there would pass
/// for a good, older one.
public struct ArchiveRestore: Sendable {
    public let archive: BackupArchive

    public init(archive: BackupArchive) {
        self.archive = archive
    }

    /// Restores `name` into `output`: an archived database if the archive
    /// holds one by that name, otherwise an archived plain file. An
    /// existing `output` is refused unless `force`.
    public func restore(_ name: String, to output: String, target: RestoreTarget = .latest, force: Bool = false) throws(RestoreError) -> RestoreResult {
        try Self.checkName(name)
        if isDatabase(name) {
            return try restoreDatabase(name, to: output, target: target, force: force)
        }
        if !PlainFileVersion.versions(of: name, in: archive).isEmpty {
            return try restorePlainFile(name, to: output, target: target, force: force)
        }
        let databases = archive.databases()
        let files = PlainFileVersion.archivedPaths(in: archive)
        let held = databases.isEmpty && files.isEmpty ? "it holds nothing"
            : "databases: " + (databases.isEmpty ? "none" : databases.joined(separator: ", "))
                + "; plain files: " + (files.isEmpty ? "none" : files.joined(separator: ", "))
        throw RestoreError(.notArchived, "\(name) is not in the archive at \(archive.root) (\(held))")
    }

    /// Whether `name` is an archived database: its replica directory has
    /// an `ltx` directory, even if retention left no file in it.
    public func isDatabase(_ name: String) -> Bool {
        Syscall.isDirectory(archive.replicaDirectory(name) + "/ltx")
    }

    /// Rebuilds database `name` as of `target` into `output`.
    public func restoreDatabase(_ name: String, to output: String, target: RestoreTarget, force: Bool) throws(RestoreError) -> RestoreResult {
        let plan = try RestorePlan(database: name, files: archive.files(of: name), target: target)
        try Self.checkOutput(output, force: force, database: true)
        for file in plan.files {
            try Self.checkHeader(file)
        }

        // A temporary name of its own, created here exclusively (never
        // through a link someone placed there).
        let temporary = DurableFile.temporaryName(for: output)
        switch Syscall.open(at: AT_FDCWD, temporary, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600) {
        case .success(let fd): Syscall.close(fd)
        case .failure(let error): throw RestoreError(.io, "cannot create the restored database", path: temporary, errno: error)
        }
        let verified: Bool
        do throws(RestoreError) {
            let rebuilder = LTXRebuilder(requireSnapshotStart: true, synchronize: true, allowOverlap: true)
            let summary: LTXChainSummary
            do throws(LTXError) {
                // The plan's files come in TXID order (each starts after
                // the one before and ends later), the order the rebuilder
                // sorts them in.
                summary = try rebuilder.rebuild(files: plan.files.map(\.path), into: temporary)
            } catch {
                if case .io(_, let path, let errno) = error, path == temporary {
                    throw RestoreError(.io, "cannot write the restored database", path: temporary, errno: Errno(rawValue: errno))
                }
                throw RestoreError(.corrupt, "the backup of \(name) cannot be applied", ltx: error)
            }
            guard summary.lastTXID == plan.txid, let checksum = summary.databaseChecksum else {
                throw RestoreError(.corrupt, "the backup of \(name) rebuilt TXID \(summary.lastTXID), its plan ends at \(plan.txid)")
            }
            verified = try verify(name, txid: plan.txid, checksum: checksum)
            try Self.rename(temporary, to: output, force: force)
        } catch {
            _ = Syscall.unlink(at: AT_FDCWD, temporary)
            throw error
        }
        do throws(Errno) {
            try DurableFile.syncDirectory(of: output)
        } catch {
            throw RestoreError(.io, "cannot sync the directory of the restored database", path: output, errno: error)
        }
        return RestoreResult(name: name, output: output, kind: .database(txid: plan.txid), timestamp: plan.timestamp,
                             fileCount: plan.files.count, verified: verified)
    }

    /// Moves the rebuilt database into place; without `force`, never over
    /// a file that appeared meanwhile (`RENAME_NOREPLACE`, where the file
    /// system has it).
    private static func rename(_ temporary: String, to output: String, force: Bool) throws(RestoreError) {
        var result = Syscall.rename(at: AT_FDCWD, temporary, to: output, flags: force ? 0 : Syscall.renameNoReplace)
        if case .failure(.invalid) = result {
            result = Syscall.rename(at: AT_FDCWD, temporary, to: output)
        }
        switch result {
        case .success: return
        case .failure(.exists):
            throw RestoreError(.outputExists, "appeared during the restore: refusing to replace it (--force replaces it)", path: output)
        case .failure(let error):
            throw RestoreError(.io, "cannot rename \(temporary) into place", path: output, errno: error)
        }
    }

    /// Compares the rebuilt database's checksum with the one recorded for
    /// `txid`. True when they agree; false when the archive keeps no
    /// positions journal at all (Litestream wrote it: nothing to compare
    /// with). A journal without an entry for `txid` is an error: the
    /// archiver records every end point before it archives the file.
    private func verify(_ name: String, txid: TXID, checksum: Checksum) throws(RestoreError) -> Bool {
        let positions = ArchivePositions(path: archive.positionsPath(name))
        switch Syscall.stat(positions.path) {
        case .failure(.noEntry): return false
        case .failure(let error):
            throw RestoreError(.io, "cannot read the recorded checksums of \(name)", path: positions.path, errno: error)
        case .success: break
        }
        // Any entry for the TXID may be the file's: a node that lost the
        // primary role between recording a position and renaming its file
        // into place leaves an entry for a file that never appeared.
        let recorded = positions.read().filter { $0.txid == txid }.map(\.checksum)
        guard !recorded.isEmpty else {
            throw RestoreError(.checksumMismatch, "no checksum is recorded for TXID \(txid) of \(name): "
                + "the archive is not the one its journal describes", path: positions.path)
        }
        guard recorded.contains(checksum) else {
            throw RestoreError(.checksumMismatch, "the database rebuilt at TXID \(txid) of \(name) has checksum \(checksum), "
                + "the archive recorded \(recorded.map(\.description).joined(separator: ", "))", path: positions.path)
        }
        return true
    }

    /// The file's header must name the TXIDs its name does: the plan was
    /// made from names, and a file that says otherwise inside is not the
    /// one the plan meant.
    private static func checkHeader(_ file: BackupArchive.File) throws(RestoreError) {
        do throws(LTXError) {
            let source = try LTXFileSource(path: file.path)
            defer { source.close() }
            var decoder = LTXDecoder(source: source)
            let header = try decoder.decodeHeader()
            if header.minTXID != file.minTXID || header.maxTXID != file.maxTXID {
                throw LTXError.invalidFileName(
                    "name says TXIDs \(file.minTXID)-\(file.maxTXID) but the header says \(header.minTXID)-\(header.maxTXID)")
            }
        } catch {
            throw RestoreError(.corrupt, "archived file at level \(file.level) is not usable", path: file.path, ltx: error)
        }
    }

    /// Refuses an existing output unless `force`. For a database, also a
    /// WAL or rollback journal beside it, even with `force`: SQLite would
    /// apply its pages to the restored database on the next open, and
    /// removing it could lose the only copy of what it holds.
    static func checkOutput(_ output: String, force: Bool, database: Bool) throws(RestoreError) {
        if !force, case .success = Syscall.lstat(at: AT_FDCWD, output) {
            throw RestoreError(.outputExists, "exists: refusing to replace it (--force replaces it)", path: output)
        }
        guard database else { return }
        for suffix in ["-wal", "-journal"] {
            if case .success = Syscall.lstat(at: AT_FDCWD, output + suffix) {
                throw RestoreError(.outputExists, "exists: SQLite would apply it to the restored database; "
                    + "move it away first (even --force keeps it)", path: output + suffix)
            }
        }
    }

    /// A name in the archive: relative, no `.` or `..` components, and not
    /// ReplFS's own metadata.
    static func checkName(_ name: String) throws(RestoreError) {
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        let bad = name.isEmpty || name.hasPrefix("/")
            || components.contains { $0.isEmpty || $0 == "." || $0 == ".." || $0 == Substring(BackupArchive.metadataName) }
        if bad {
            throw RestoreError(.invalidTarget, "\"\(name)\" is not a name in an archive (a database or file path relative to the mount)")
        }
    }
}
