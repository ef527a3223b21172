#if canImport(Glibc)
import Glibc
#endif

extension ArchiveRestore {
    /// Restores plain file `path` (the Noise key) as of `target`: its
    /// newest archived version at or before it, with its mode and its time.
    ///
    /// Plain files have versions in time, not TXIDs, so a TXID target is
    /// refused; so is a target whose newest version is the file's removal
    /// (restoring "nothing" by writing nothing would look like success).
    public func restorePlainFile(_ path: String, to output: String, target: RestoreTarget, force: Bool) throws(RestoreError) -> RestoreResult {
        let versions = PlainFileVersion.versions(of: path, in: archive)
        let chosen: PlainFileVersion?
        switch target {
        case .latest: chosen = versions.last
        case .timestamp(let time): chosen = versions.last { $0.timestamp <= time }
        case .txid:
            throw RestoreError(.invalidTarget, "\(path) is a plain file: its versions have times, not TXIDs (restore it with --timestamp)")
        }
        guard let version = chosen else {
            let oldest = versions.first.map { "; its oldest version is of \(RFC3339Time.format(milliseconds: $0.timestamp))" } ?? ""
            throw RestoreError(.noBackup, "no backup of \(path) at or before \(target)\(oldest)")
        }
        guard case .file(let mode) = version.change else {
            throw RestoreError(.removed, "\(path) was removed at \(RFC3339Time.format(milliseconds: version.timestamp))")
        }
        try Self.checkOutput(output, force: force, database: false)

        let source = PlainFileVersion.directory(of: path, in: archive) + "/" + version.name
        let bytes: [UInt8]
        switch Syscall.readFile(source) {
        case .success(let content): bytes = content
        case .failure(let error): throw RestoreError(.io, "cannot read the archived version of \(path)", path: source, errno: error)
        }
        do throws(Errno) {
            // Created with its mode, under a temporary name of its own: a
            // private key is never readable by others, not even for a moment.
            let file = try DurableFile(path: output, mode: mode_t(mode & 0o7777))
            try file.append(bytes)
            try file.commit(timestamp: version.timestamp)
        } catch {
            throw RestoreError(.io, "cannot write the restored file", path: output, errno: error)
        }
        return RestoreResult(name: path, output: output, kind: .plainFile(mode: mode & 0o7777), timestamp: version.timestamp,
                             fileCount: 1, verified: false)
    }
}
