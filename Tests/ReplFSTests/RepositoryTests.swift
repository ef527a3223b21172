import Foundation
import Testing

/// The clone stands alone: it sets itself up and carries its own contract.
@Suite("Repository")
struct RepositoryTests {
    static let top = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Files git tracks (or, outside a git checkout, none: nothing to check).
    static func trackedFiles() throws -> [String] {
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        git.arguments = ["-C", top, "ls-files"]
        let pipe = Pipe()
        git.standardOutput = pipe
        git.standardError = FileHandle.nullDevice
        try git.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        git.waitUntilExit()
        guard git.terminationStatus == 0 else { return [] }
        return String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test("no tracked file refers to a directory outside the clone")
    func selfContained() throws {
        // Spelt in pieces so that this file does not match itself.
        let outside = [".." + "/shared", "/" + "work/"]
        let files = try Self.trackedFiles()
        #expect(!files.isEmpty || !FileManager.default.fileExists(atPath: Self.top + "/.git"))
        for file in files {
            guard let data = FileManager.default.contents(atPath: Self.top + "/" + file) else { continue }
            let text = String(decoding: data, as: UTF8.self)
            for needle in outside {
                let refers = text.contains(needle)
                #expect(!refers, "\(file) refers to \(needle)")
            }
        }
    }

    @Test("the Makefile builds SQLite's tools with the project's own script")
    func ownToolScript() throws {
        let makefile = try String(contentsOfFile: Self.top + "/Makefile", encoding: .utf8)
        #expect(makefile.contains("scripts/sqlite-tools.sh"))
        #expect(FileManager.default.isExecutableFile(atPath: Self.top + "/scripts/sqlite-tools.sh"))
    }

    @Test("docs/design.md names every configuration key the loader reads")
    func designNamesEveryKey() throws {
        let design = try String(contentsOfFile: Self.top + "/docs/design.md", encoding: .utf8)
        let keys = [
            "node", "cluster", "mount", "data", "retention",
            "replication.listen", "replication.advertise", "replication.token-file", "replication.tls",
            "replication.sync-replicas", "replication.sync-timeout", "replication.sync-degrade",
            "lease.type", "lease.candidate", "lease.max-lag", "lease.static.primary", "lease.static.peers",
            "lease.etcd.endpoints", "lease.etcd.key", "lease.etcd.ttl", "lease.etcd.tls",
            "admin.socket", "exec.command", "exec.stop-timeout", "metrics.listen",
            "http.listen", "hooks.on-primary", "vip.address", "backup.path", "fuse.io-uring",
        ]
        for key in keys {
            #expect(design.contains("`\(key)"), "docs/design.md does not name \(key)")
        }
        for heading in design.split(separator: "\n") where heading.hasPrefix("#") {
            #expect(!heading.lowercased().contains("issue"), "a heading cites the tracker: \(heading)")
        }
    }
}
