#if canImport(Glibc)
import Glibc
#endif

/// Archives the mount's plain files (the Noise key) with their history: a
/// version each time one changes or goes (``PlainFileVersion``), checked
/// at most once a second. Owned by the ``Archiver``'s thread.
final class PlainFileArchiver {
    private let archive: BackupArchive
    private let store: Store
    private let retention: Duration
    /// Each archived file's newest version (its digest); nil: not read yet.
    private var digests: [String: UInt64]?
    private var lastCheck: Int64 = 0

    init(archive: BackupArchive, store: Store, retention: Duration) {
        self.archive = archive
        self.store = store
        self.retention = retention
    }

    /// Reads the archive afresh next time (another node may have written it).
    func forget() {
        digests = nil
    }

    func archiveChanges() throws(ArchiveError) {
        let now = WallClock.milliseconds()
        guard digests == nil || now - lastCheck >= 1000 else { return }
        lastCheck = now
        if digests == nil { digests = archivedDigests() }
        let files = store.plainEntries().filter { $0.kind == .file }
        for entry in files where digests![entry.path] != entry.digest {
            // An empty file is most often a database SQLite has just
            // created and not written yet: not a version worth keeping.
            guard case .success(let content) = store.readPlainFile(entry.path), !content.isEmpty else { continue }
            // The version's time is the file's own (when it was written),
            // unless that is not after the newest version archived (a copy
            // that kept an old modification time): then this check's.
            var changed = now
            if case .success(let info) = store.attributes(entry.path) {
                let written = Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
                let newest = PlainFileVersion.versions(of: entry.path, in: archive).last?.timestamp ?? Int64.min
                if written > newest { changed = min(now, written) }
            }
            try write(entry.path, PlainFileVersion(timestamp: changed, sequence: 0, change: .file(mode: entry.mode)), content)
            digests![entry.path] = PlainEntry.digest(kind: .file, mode: entry.mode, bytes: content)
        }
        let present = Set(files.map(\.path))
        for path in digests!.keys.sorted() where !present.contains(path) {
            // A path that became a database was not removed.
            if store.position(of: path) == nil {
                try write(path, PlainFileVersion(timestamp: now, sequence: 0, change: .removed), [])
            }
            digests![path] = nil
        }
    }

    /// The newest archived version of each file that is not removed.
    private func archivedDigests() -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for path in PlainFileVersion.archivedPaths(in: archive) {
            guard let newest = PlainFileVersion.versions(of: path, in: archive).last, case .file(let mode) = newest.change,
                case .success(let content) = Syscall.readFile(PlainFileVersion.directory(of: path, in: archive) + "/" + newest.name)
            else { continue }
            result[path] = PlainEntry.digest(kind: .file, mode: mode, bytes: content)
        }
        return result
    }

    private func write(_ path: String, _ version: PlainFileVersion, _ content: [UInt8]) throws(ArchiveError) {
        let directory = PlainFileVersion.directory(of: path, in: archive)
        if case .failure(let error) = DurableFile.makeDirectories(directory, mode: Archiver.directoryMode) {
            throw ArchiveError("cannot create", path: directory, error)
        }
        // A path too long for its directory's name is recorded whole.
        let pathFile = directory + "/" + DatabaseKey.pathFileName
        if DatabaseKey.isShortened(DatabaseKey.escape(path), of: path), case .failure = Syscall.lstat(at: AT_FDCWD, pathFile),
            case .failure(let error) = DurableFile.write(Array(path.utf8), to: pathFile, mode: Archiver.fileMode, timestamp: nil)
        {
            throw ArchiveError("cannot write", path: pathFile, error)
        }
        var version = version
        let taken = Set(PlainFileVersion.versions(of: path, in: archive).filter { $0.timestamp == version.timestamp }.map(\.sequence))
        while taken.contains(version.sequence) { version.sequence += 1 }
        let target = directory + "/" + version.name
        if case .failure(let error) = DurableFile.write(content, to: target, mode: Archiver.fileMode, timestamp: version.timestamp) {
            throw ArchiveError("cannot write", path: target, error)
        }
    }

    /// Versions older than `retention` go, except the newest of them (what
    /// the file was at the oldest moment a restore can ask for); a file
    /// removed before then goes entirely.
    func enforceRetention(now: Int64) throws(ArchiveError) {
        let cutoff = now - retention.milliseconds
        for path in PlainFileVersion.archivedPaths(in: archive) {
            let versions = PlainFileVersion.versions(of: path, in: archive)
            guard let floor = versions.lastIndex(where: { $0.timestamp <= cutoff }) else { continue }
            let directory = PlainFileVersion.directory(of: path, in: archive)
            let removedForGood = floor == versions.count - 1 && versions[floor].change == .removed
            for version in versions[..<(removedForGood ? versions.count : floor)] {
                _ = Syscall.unlink(at: AT_FDCWD, directory + "/" + version.name)
            }
            if removedForGood { _ = Syscall.unlink(at: AT_FDCWD, directory, isDirectory: true) }
        }
    }
}
