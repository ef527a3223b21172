import Foundation

/// Paths as the kernel will resolve them, for comparing configured
/// directories: `/srv/a/../b` is `/srv/b`, and a symlink leads wherever it
/// points.
enum ResolvedPath {
    /// `path` with `.`, `..` and repeated slashes folded away, without
    /// looking at the file system.
    static func lexical(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// `path` with every symlink of its longest existing ancestor resolved
    /// (`realpath(3)`), and the part that does not exist yet appended
    /// lexically: the mount point or data directory may not exist yet.
    static func resolved(_ path: String) -> String {
        var existing = lexical(path)
        var missing: [String] = []
        while existing != "/" {
            if case .success(let real) = Syscall.realpath(existing) {
                return lexical(real + "/" + missing.reversed().joined(separator: "/"))
            }
            let url = URL(fileURLWithPath: existing)
            missing.append(url.lastPathComponent)
            existing = url.deletingLastPathComponent().path
        }
        return lexical("/" + missing.reversed().joined(separator: "/"))
    }

    /// Whether `path` lies strictly below `directory` (both resolved).
    static func isInside(_ path: String, _ directory: String) -> Bool {
        directory == "/" ? path != "/" : path.hasPrefix(directory + "/")
    }
}
