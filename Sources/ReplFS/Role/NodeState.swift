#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// What a node remembers of the primary role across restarts, in
/// `DATA/node.json`: the highest epoch it has seen and who held it.
///
/// This is what keeps a restarted old primary from resuming as primary
/// after another node took over (invariant 5): it is written, durably,
/// before the node acts on a new epoch (takes it, hands it over, or follows
/// a primary that holds it).
public struct NodeState: Codable, Sendable, Equatable {
    /// The highest primary epoch this node has seen.
    public var epoch: Epoch
    /// The node that holds (or was handed) that epoch; nil if never known.
    public var primary: String?

    public init(epoch: Epoch = .unknown, primary: String? = nil) {
        self.epoch = epoch
        self.primary = primary
    }
}

/// Reads and writes ``NodeState`` atomically and durably.
public struct NodeStateFile: Sendable {
    public let path: String

    public init(directory: DataDirectory) {
        path = directory.root + "/node.json"
    }

    /// The stored state; a fresh state when there is none yet.
    public func load() throws(StoreError) -> NodeState {
        let bytes: [UInt8]
        switch Syscall.readFile(path) {
        case .success(let value): bytes = value
        case .failure(.noEntry): return NodeState()
        case .failure(let error): throw StoreError(.foreignDataDirectory, "unreadable node state", path: path, errno: error)
        }
        do {
            return try JSONDecoder().decode(NodeState.self, from: Data(bytes))
        } catch {
            throw StoreError(.foreignDataDirectory, "unreadable node state: \(error)", path: path)
        }
    }

    /// Replaces the stored state: written to a temporary file, synced,
    /// renamed over, and the directory synced.
    public func save(_ state: NodeState) throws(StoreError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let bytes = try? Array(encoder.encode(state)) else { throw StoreError(.io, "cannot encode node state", path: path) }
        let temporary = path + ".tmp"
        let fd: Int32
        switch Syscall.open(at: AT_FDCWD, temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) {
        case .success(let value): fd = value
        case .failure(let error): throw StoreError(.io, "cannot write node state", path: temporary, errno: error)
        }
        let written = bytes.withUnsafeBytes { Syscall.pwrite(fd, $0, at: 0) }
        let synced = Syscall.fsync(fd)
        Syscall.close(fd)
        if case .failure(let error) = written { throw StoreError(.io, "cannot write node state", path: temporary, errno: error) }
        if case .failure(let error) = synced { throw StoreError(.io, "cannot sync node state", path: temporary, errno: error) }
        if case .failure(let error) = Syscall.rename(at: AT_FDCWD, temporary, to: path, flags: 0) {
            throw StoreError(.io, "cannot replace node state", path: path, errno: error)
        }
        let directory = (path as NSString).deletingLastPathComponent
        if case .success(let dfd) = Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) {
            _ = Syscall.fsync(dfd)
            Syscall.close(dfd)
        }
    }
}
