#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The on-disk layout of a node's data directory, and its identity checks.
///
/// ```
/// DATA/replfs.json   cluster name, node name, format version
/// DATA/lock          flock()ed by the running replfsd
/// DATA/files/        the real files the mount shows
/// DATA/ltx/<key>/    LTX log of each database (see DatabaseKey, LTXLogDirectory)
/// DATA/spool/        LTX files recorded at commit, before their segments
/// ```
///
/// A directory that holds anything else, or the identity file of another
/// cluster, is refused before anything in it is touched.
public struct DataDirectory: Sendable {
    public let root: String
    public var files: String { root + "/files" }
    public var ltx: String { root + "/ltx" }
    public var spool: String { root + "/spool" }
    public var identityFile: String { root + "/replfs.json" }
    public var lockFile: String { root + "/lock" }

    /// The identity recorded at first use.
    public struct Identity: Codable, Sendable, Equatable {
        public var format: Int
        public var cluster: String
        public var node: String
        /// A random ID made when the directory was created (16 hex digits).
        /// Names come from configs and can be copied by mistake; the ID
        /// cannot: handshakes tell two daemons named alike apart by it.
        /// Missing in directories made before it existed: added at start.
        public var nodeID: String?

        /// ``nodeID`` as a number (0 if missing or malformed).
        public var nodeIDValue: UInt64 { nodeID.flatMap { UInt64($0, radix: 16) } ?? 0 }
    }

    /// A new random node ID, never 0.
    static func newNodeID() -> String {
        var id: UInt64 = 0
        while id == 0 { id = UInt64.random(in: 1...UInt64.max) }
        return HexFormat.sixteenDigits(id)
    }

    public static let formatVersion = 1

    public init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// Checks the directory belongs to `cluster` (or is new or empty)
    /// without changing anything. Returns its identity, nil if it is new or empty.
    @discardableResult
    public func check(cluster: String) throws(StoreError) -> Identity? {
        let st: stat
        switch Syscall.stat(root) {
        case .success(let value): st = value
        case .failure(.noEntry): return nil
        case .failure(let error): throw StoreError(.io, "cannot use data directory", path: root, errno: error)
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw StoreError(.foreignDataDirectory, "data directory is not a directory", path: root)
        }
        let entries = (try? Syscall.listDirectory(root).get()) ?? []
        guard !entries.isEmpty else { return nil }
        guard entries.contains("replfs.json") else {
            throw StoreError(.foreignDataDirectory, "data directory is not empty and has no replfs.json: not a ReplFS data directory", path: root)
        }
        let identity = try readIdentity()
        guard identity.cluster == cluster else {
            throw StoreError(
                .foreignDataDirectory, "data directory belongs to cluster \"\(identity.cluster)\", not \"\(cluster)\" (config key cluster)",
                path: root)
        }
        guard identity.format == DataDirectory.formatVersion else {
            throw StoreError(.foreignDataDirectory, "unsupported data directory format \(identity.format)", path: root)
        }
        return identity
    }

    /// Checks the directory belongs to `cluster`, creating the layout if the
    /// directory is new or empty. Throws without changing anything otherwise.
    public func prepare(cluster: String, node: String) throws(StoreError) {
        if let identity = try check(cluster: cluster) {
            try createLayout()
            if identity.nodeIDValue == 0 {
                var upgraded = identity
                upgraded.nodeID = DataDirectory.newNodeID()
                try writeIdentity(upgraded)
            }
            return
        }
        if case .failure(let error) = Syscall.makeDirectories(root) {
            throw StoreError(.io, "cannot create data directory", path: root, errno: error)
        }
        try createLayout()
        try writeIdentity(Identity(format: DataDirectory.formatVersion, cluster: cluster, node: node, nodeID: DataDirectory.newNodeID()))
    }

    private func writeIdentity(_ identity: Identity) throws(StoreError) {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(identity).write(to: URL(fileURLWithPath: identityFile), options: .atomic)
        } catch {
            throw StoreError(.io, "cannot write identity: \(error.localizedDescription)", path: identityFile)
        }
    }

    /// Reads `replfs.json`.
    public func readIdentity() throws(StoreError) -> Identity {
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: identityFile))
            return try JSONDecoder().decode(Identity.self, from: data)
        } catch {
            throw StoreError(.foreignDataDirectory, "unreadable identity file: \(error)", path: identityFile)
        }
    }

    private func createLayout() throws(StoreError) {
        for directory in [files, ltx] {
            if case .failure(let error) = Syscall.makeDirectories(directory) {
                throw StoreError(.io, "cannot create directory", path: directory, errno: error)
            }
        }
    }

    /// Takes the directory's exclusive lock; it is held until the returned
    /// value goes away (or the process ends).
    public func lock() throws(StoreError) -> DataDirectoryLock {
        let fd: Int32
        switch Syscall.open(at: AT_FDCWD, lockFile, flags: O_RDWR | O_CREAT, mode: 0o644) {
        case .success(let value): fd = value
        case .failure(let error): throw StoreError(.io, "cannot open lock file", path: lockFile, errno: error)
        }
        switch Syscall.tryLockExclusive(fd) {
        case .success(true):
            let pid = "\(getpid())\n"
            _ = Syscall.ftruncate(fd, 0)
            _ = pid.utf8CString.withUnsafeBytes { Syscall.pwrite(fd, UnsafeRawBufferPointer(rebasing: $0.dropLast()), at: 0) }
            return DataDirectoryLock(fd: fd)
        case .success(false):
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = (try? buffer.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }.get()) ?? 0
            let holder = String(decoding: buffer.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            Syscall.close(fd)
            throw StoreError(.busy, "data directory is in use by another replfsd" + (holder.isEmpty ? "" : " (pid \(holder))"), path: root)
        case .failure(let error):
            Syscall.close(fd)
            throw StoreError(.io, "cannot lock data directory", path: lockFile, errno: error)
        }
    }
}

/// The data directory's exclusive lock (`flock` on `DATA/lock`), released
/// when this goes away: whatever path startup takes out, the lock is
/// closed exactly once.
public final class DataDirectoryLock: Sendable {
    private let fd: Int32

    fileprivate init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        Syscall.close(fd)
    }
}
