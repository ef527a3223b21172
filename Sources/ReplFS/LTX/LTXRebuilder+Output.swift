#if canImport(Glibc)
import Glibc
#endif

extension LTXRebuilder {
    /// Rebuilds the chain in `directory` into a new file at `output`,
    /// atomically: the database is built under a temporary name beside
    /// `output`, synced, and renamed into place only when every file of the
    /// chain applied and checked. On failure nothing is left at `output`
    /// (a partial rebuild would look like a valid, older database).
    ///
    /// An existing `output` is refused unless `overwrite` is set.
    public func rebuild(directory: String, intoNew output: String, overwrite: Bool) throws(LTXError) -> LTXChainSummary {
        if !overwrite, case .success = Syscall.lstat(at: AT_FDCWD, output) {
            throw .outputExists(path: output)
        }
        let temporary = output + ".rebuild-\(getpid())"
        _ = Syscall.unlink(at: AT_FDCWD, temporary)
        var rebuilder = self
        rebuilder.synchronize = true
        let summary: LTXChainSummary
        do {
            summary = try rebuilder.rebuild(directory: directory, into: temporary)
        } catch {
            _ = Syscall.unlink(at: AT_FDCWD, temporary)
            throw error
        }
        if case .failure(let error) = Syscall.rename(at: AT_FDCWD, temporary, to: output) {
            _ = Syscall.unlink(at: AT_FDCWD, temporary)
            throw .io(operation: "rename", path: output, errno: error.rawValue)
        }
        // The rename is durable once the directory entry is.
        let parent = output.contains("/") ? String(output[..<output.lastIndex(of: "/")!]) : "."
        if case .success(let fd) = Syscall.open(at: AT_FDCWD, parent.isEmpty ? "/" : parent, flags: O_RDONLY | O_DIRECTORY) {
            _ = Syscall.fsync(fd)
            Syscall.close(fd)
        }
        return summary
    }
}
