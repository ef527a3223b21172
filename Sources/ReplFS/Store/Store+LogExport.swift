#if canImport(Glibc)
import Glibc
#endif

extension Store {
    /// What ``exportLog(database:into:)`` wrote.
    public struct LogExport: Sendable, Equatable {
        public var files: Int
        public var first: TXID
        public var last: TXID
    }

    /// Writes the retained chain of one database into `directory` (created
    /// if missing): every LTX file of the unbroken run that ends at the
    /// newest transaction, under upstream's names, each durable on return.
    /// Files already in `directory` under those names are replaced.
    ///
    /// Runs on a live node: every committed transaction is in its segment
    /// first, and a file that retention removes while it is copied (the
    /// oldest go first) only shortens the chain from the front. Segments
    /// leave the node as the single LTX files they hold.
    public func exportLog(database path: String, into directory: String) -> Result<LogExport, Errno> {
        guard let database = database(at: path, create: false) else { return .failure(.noEntry) }
        database.waitForLogFiles()
        if case .failure(let error) = Syscall.mkdir(at: AT_FDCWD, directory, mode: 0o755), error != .exists { return .failure(error) }
        let target: Int32
        switch Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let fd): target = fd
        case .failure(let error): return .failure(error)
        }
        defer { Syscall.close(target) }
        guard let log = database.existingLog else { return .failure(.noEntry) }
        let reader = log.reader(after: TXID(0))
        var written: [LTXFileName] = []
        while let record = reader.next() {
            let name = LTXFileName(minTXID: record.minTXID, maxTXID: record.maxTXID)
            // The run that ends at the newest record: a break (retention
            // removed a file while this one was read) restarts it.
            if let previous = written.last, previous.maxTXID.next != record.minTXID {
                for earlier in written { _ = Syscall.unlink(at: target, earlier.description) }
                written.removeAll()
            }
            let copied: Result<Void, Errno>
            switch record.content {
            case .bytes(let bytes): copied = Self.writeDurably(bytes, to: name.description, in: target)
            case .file(let file): copied = Self.copyDurably(file, to: name.description, in: target)
            }
            switch copied {
            case .success:
                written.append(name)
            case .failure(.noEntry):
                // Retention removed it (and everything older): the chain starts after it.
                for earlier in written { _ = Syscall.unlink(at: target, earlier.description) }
                written.removeAll()
            case .failure(let error):
                return .failure(error)
            }
        }
        if case .failure(let error) = Syscall.fsync(target) { return .failure(error) }
        guard let first = written.first, let last = written.last else { return .failure(.noEntry) }
        return .success(LogExport(files: written.count, first: first.minTXID, last: last.maxTXID))
    }

    /// Writes `bytes` as `name` in the directory `target`: under a temporary
    /// name, synced, renamed.
    private static func writeDurably(_ bytes: [UInt8], to name: String, in target: Int32) -> Result<Void, Errno> {
        let temporary = "." + name + LTXMaterializer.temporarySuffix
        let result = Syscall.open(at: target, temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).flatMap { fd in
            defer { Syscall.close(fd) }
            return bytes.withUnsafeBytes { Syscall.write(fd, $0) }.flatMap { Syscall.fsync(fd) }
        }.flatMap { Syscall.rename(at: target, temporary, to: name) }
        if case .failure = result { _ = Syscall.unlink(at: target, temporary) }
        return result
    }

    /// Copies `file` to `name` in the directory `target`: written under a
    /// temporary name, synced, renamed.
    private static func copyDurably(_ file: String, to name: String, in target: Int32) -> Result<Void, Errno> {
        let input: Int32
        switch Syscall.open(at: AT_FDCWD, file, flags: O_RDONLY) {
        case .success(let fd): input = fd
        case .failure(let error): return .failure(error)
        }
        defer { Syscall.close(input) }
        let temporary = "." + name + LTXMaterializer.temporarySuffix
        let output: Int32
        switch Syscall.open(at: target, temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) {
        case .success(let fd): output = fd
        case .failure(let error): return .failure(error)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        var result: Result<Void, Errno> = .success(())
        while case .success = result {
            guard case .success(let count) = Syscall.pread(input, into: buffer, at: offset) else {
                result = .failure(.io)
                break
            }
            if count == 0 { break }
            result = Syscall.write(output, UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            offset += Int64(count)
        }
        result = result.flatMap { Syscall.fsync(output) }
        Syscall.close(output)
        result = result.flatMap { Syscall.rename(at: target, temporary, to: name) }
        if case .failure = result { _ = Syscall.unlink(at: target, temporary) }
        return result
    }
}
