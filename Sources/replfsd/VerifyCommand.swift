import ArgumentParser
import ReplFS

/// `replfsd verify PATH...`: checks LTX files and chains.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check LTX files (header rules, checksums) and, for a directory, the chain.",
        discussion: """
            A file is decoded in full and its file checksum checked. A directory is
            checked as a chain: contiguous TXIDs, each file's pre-apply checksum equal
            to the previous file's post-apply checksum. With --rebuild OUT.db DIR the
            chain (which must start with a snapshot) is applied to a new database,
            checking each post-apply checksum against the rebuilt content. The
            database is built under a temporary name and renamed to OUT.db only on
            success; an existing OUT.db is refused unless --force is given.
            Exits 1 with the file and reason on the first bad file.
            """)

    @Option(name: .long, help: "Rebuild the database of the chain in DIR into this file.")
    var rebuild: String?

    @Flag(name: .long, help: "With --rebuild: replace an existing OUT.db.")
    var force = false

    @Argument(help: "LTX files or directories of LTX files.")
    var paths: [String]

    func run() throws {
        if let rebuild {
            guard paths.count == 1 else {
                printError("replfsd verify --rebuild OUT.db DIR: exactly one directory")
                throw ExitCode(2)
            }
            do {
                let expanded = try LTXSegment.singleFiles(of: paths)
                defer { if expanded.temporary { LTXSegment.removeTemporary(expanded.directory) } }
                let summary = try LTXRebuilder().rebuild(directory: expanded.directory, intoNew: rebuild, overwrite: force)
                print("ok: rebuilt \(rebuild) from \(paths[0]): \(summary)")
            } catch {
                printError("replfsd verify: \(error)")
                throw ExitCode(1)
            }
            return
        }
        for path in paths {
            do {
                if isDirectory(path) || LTXSegment.isSegment(path: path) {
                    // Segments are checked as the single files they hold.
                    let expanded = try LTXSegment.singleFiles(of: [path])
                    defer { if expanded.temporary { LTXSegment.removeTemporary(expanded.directory) } }
                    let summary = try LTXChainVerifier(requireSnapshotStart: false).verify(directory: expanded.directory)
                    print("ok: \(path): \(summary)")
                } else {
                    let summary = try LTXChainVerifier(requireSnapshotStart: false).verify(files: [path])
                    print("ok: \(path): \(summary)")
                }
            } catch {
                printError("replfsd verify: \(error)")
                throw ExitCode(1)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
