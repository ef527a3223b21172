#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The kernel's view of the tree: FUSE node IDs mapped to paths.
///
/// The low-level FUSE API names files by node IDs that the file system hands
/// out in LOOKUP/CREATE replies and the kernel gives back with a count in
/// FORGET. Each node remembers its parent and name, so its path (which the
/// store works with) follows renames of any directory above it. A real file
/// (device, inode) maps to one node, so hard links and repeated lookups agree.
final class InodeTable: Sendable {
    static let rootID: UInt64 = 1

    struct Node: Sendable {
        var parent: UInt64
        var name: String
        var lookups: UInt64
        var key: FileKey
        /// Unlinked or replaced: path-based operations fail with ENOENT.
        var detached: Bool
    }

    struct FileKey: Hashable, Sendable {
        var device: UInt64
        var inode: UInt64

        init(_ st: stat) {
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
        }

        init(device: UInt64, inode: UInt64) {
            self.device = device
            self.inode = inode
        }
    }

    private struct ChildKey: Hashable {
        var parent: UInt64
        var name: String
    }

    private struct State: ~Copyable {
        var nodes: [UInt64: Node] = [:]
        var byKey: [FileKey: UInt64] = [:]
        var children: [ChildKey: UInt64] = [:]
        var nextID: UInt64 = 2
    }

    private let state: Mutex<State>

    init(root: stat) {
        var initial = State()
        let key = FileKey(root)
        initial.nodes[InodeTable.rootID] = Node(parent: 0, name: "", lookups: 1 << 40, key: key, detached: false)
        initial.byKey[key] = InodeTable.rootID
        state = Mutex(initial)
    }

    /// Path of a node relative to the root ("" for the root), or `nil` if it
    /// is unknown or no longer reachable.
    func path(of id: UInt64) -> String? {
        state.withLock { state in Self.path(of: id, in: state) }
    }

    /// Path of `name` inside the directory node `parent`.
    func path(parent: UInt64, name: String) -> String? {
        state.withLock { state in
            guard let base = Self.path(of: parent, in: state) else { return nil }
            return base.isEmpty ? name : base + "/" + name
        }
    }

    private static func path(of id: UInt64, in state: borrowing State) -> String? {
        if id == rootID { return "" }
        var components: [String] = []
        var current = id
        var depth = 0
        while current != rootID {
            guard let node = state.nodes[current], !node.detached, depth < 4096 else { return nil }
            components.append(node.name)
            current = node.parent
            depth += 1
        }
        return components.reversed().joined(separator: "/")
    }

    /// Records that the kernel now knows `name` in `parent` (a LOOKUP,
    /// CREATE, MKDIR... reply); returns its node ID.
    func remember(parent: UInt64, name: String, attributes st: stat) -> UInt64 {
        let key = FileKey(st)
        return state.withLock { state in
            let child = ChildKey(parent: parent, name: name)
            if let id = state.byKey[key], var node = state.nodes[id] {
                if node.parent != parent || node.name != name || node.detached {
                    let old = ChildKey(parent: node.parent, name: node.name)
                    if state.children[old] == id { state.children[old] = nil }
                    node.parent = parent
                    node.name = name
                    node.detached = false
                }
                node.lookups += 1
                state.nodes[id] = node
                state.children[child] = id
                return id
            }
            // A different file now holds this name: the old node is gone.
            if let stale = state.children[child] { state.nodes[stale]?.detached = true }
            let id = state.nextID
            state.nextID += 1
            state.nodes[id] = Node(parent: parent, name: name, lookups: 1, key: key, detached: false)
            state.byKey[key] = id
            state.children[child] = id
            return id
        }
    }

    /// The kernel dropped `count` references (FORGET).
    func forget(_ id: UInt64, count: UInt64) {
        guard id != InodeTable.rootID else { return }
        state.withLock { state in
            guard var node = state.nodes[id] else { return }
            node.lookups = node.lookups > count ? node.lookups - count : 0
            if node.lookups == 0 {
                state.nodes[id] = nil
                if state.byKey[node.key] == id { state.byKey[node.key] = nil }
                let child = ChildKey(parent: node.parent, name: node.name)
                if state.children[child] == id { state.children[child] = nil }
            } else {
                state.nodes[id] = node
            }
        }
    }

    /// `name` in `parent` was unlinked or removed.
    func removed(parent: UInt64, name: String) {
        state.withLock { state in
            let child = ChildKey(parent: parent, name: name)
            guard let id = state.children.removeValue(forKey: child) else { return }
            state.nodes[id]?.detached = true
        }
    }

    /// A rename moved `name` in `parent` to `newName` in `newParent`
    /// (replacing whatever was there), or exchanged the two.
    func renamed(parent: UInt64, name: String, newParent: UInt64, newName: String, exchange: Bool) {
        state.withLock { state in
            let from = ChildKey(parent: parent, name: name)
            let to = ChildKey(parent: newParent, name: newName)
            let moving = state.children.removeValue(forKey: from)
            let replaced = state.children.removeValue(forKey: to)
            if let moving {
                state.nodes[moving]?.parent = newParent
                state.nodes[moving]?.name = newName
                state.children[to] = moving
            }
            if let replaced {
                if exchange {
                    state.nodes[replaced]?.parent = parent
                    state.nodes[replaced]?.name = name
                    state.children[from] = replaced
                } else {
                    state.nodes[replaced]?.detached = true
                }
            }
        }
    }

    /// Node IDs currently known, with their paths (for invalidation).
    func knownPaths() -> [(id: UInt64, path: String)] {
        state.withLock { state in
            state.nodes.keys.compactMap { id in Self.path(of: id, in: state).map { (id, $0) } }
        }
    }

    /// The real file a node stands for.
    func key(of id: UInt64) -> FileKey? {
        state.withLock { $0.nodes[id]?.key }
    }

    /// The node ID of `path`, if the kernel knows it.
    func id(of path: String) -> UInt64? {
        state.withLock { state in
            if path.isEmpty { return InodeTable.rootID }
            var current = InodeTable.rootID
            for component in path.split(separator: "/") {
                guard let next = state.children[ChildKey(parent: current, name: String(component))] else { return nil }
                current = next
            }
            return current
        }
    }
}
