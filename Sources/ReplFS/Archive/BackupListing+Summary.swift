extension BackupListing {
    /// The human output of `replfsd backups`: a few lines per database and
    /// one per plain file, TXIDs in 16 hex digits as `restore --txid`
    /// takes them and as the file names show them.
    public var summary: String {
        var lines = ["archive \(path)"]
        if databases.isEmpty && plainFiles.isEmpty {
            lines.append("  (empty)")
        }
        for database in databases {
            lines.append(contentsOf: Self.lines(database))
        }
        for file in plainFiles {
            let range = [file.firstTime, file.lastTime].compactMap { $0 }.joined(separator: " .. ")
            let versions = "\(file.versions) version\(file.versions == 1 ? "" : "s")"
            lines.append("\(file.path): plain file, \(versions), \(range)\(file.removed ? ", removed" : "")")
        }
        return lines.joined(separator: "\n")
    }

    private static func lines(_ database: Database) -> [String] {
        let fileCount = database.levels.reduce(0) { $0 + $1.files }
        let levels = database.levels.map { "L\($0.level) \($0.files)" }.joined(separator: ", ")
        var lines: [String] = []
        if let first = database.firstTXID, let last = database.lastTXID, let oldest = database.oldestTime, let newest = database.newestTime {
            lines.append("\(database.name): TXID \(TXID(first))..\(TXID(last)), \(oldest) .. \(newest)")
        } else {
            lines.append("\(database.name): nothing restorable")
        }
        lines.append("  \(fileCount) file\(fileCount == 1 ? "" : "s")\(levels.isEmpty ? "" : " (\(levels))"), \(byteCount(database.totalBytes)), "
            + (database.checksumsRecorded ? "checksums recorded" : "no recorded checksums"))
        for snapshot in database.snapshots {
            lines.append("  snapshot TXID \(TXID(snapshot.txid)) \(snapshot.time) \(byteCount(snapshot.bytes))")
        }
        if let problem = database.problem {
            lines.append("  problem: \(problem)")
        }
        return lines
    }

    /// "512 bytes", "1.5 KiB", "12.0 MiB".
    static func byteCount(_ bytes: Int64) -> String {
        guard bytes >= 1024 else { return "\(bytes) bytes" }
        var value = Double(bytes) / 1024
        for unit in ["KiB", "MiB", "GiB"] {
            if value < 1024 || unit == "GiB" {
                let tenths = Int64((value * 10).rounded())
                return "\(tenths / 10).\(tenths % 10) \(unit)"
            }
            value /= 1024
        }
        return "\(bytes) bytes"
    }
}
