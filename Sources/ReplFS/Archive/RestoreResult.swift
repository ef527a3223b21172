/// What a restore wrote: which state of which database (or plain file),
/// from how many archived files, and whether the result was checked
/// against the checksum the archiver recorded for it.
public struct RestoreResult: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// A database, at this TXID.
        case database(txid: TXID)
        /// A plain file, with these permission bits.
        case plainFile(mode: UInt32)
    }

    /// The name in the archive (a database, or a plain file's path).
    public var name: String
    /// Where it was written.
    public var output: String
    public var kind: Kind
    /// The time of the state restored (ms since the epoch): the last
    /// applied file's timestamp, or the plain file version's.
    public var timestamp: Int64
    /// How many archived files were read.
    public var fileCount: Int
    /// Whether the database's checksum was compared with (and equal to)
    /// the one `ArchivePositions` recorded for its TXID. False for an
    /// archive with no positions journal (one Litestream wrote) and for
    /// plain files, which have no recorded checksum.
    public var verified: Bool

    public init(name: String, output: String, kind: Kind, timestamp: Int64, fileCount: Int, verified: Bool) {
        self.name = name
        self.output = output
        self.kind = kind
        self.timestamp = timestamp
        self.fileCount = fileCount
        self.verified = verified
    }

    /// The TXID a database was restored to; nil for a plain file.
    public var txid: TXID? {
        if case .database(let txid) = kind { return txid }
        return nil
    }

    /// The line `replfsd restore` prints, e.g. "restored app.db to TXID
    /// 0000000000000123 (2026-12-07T10:00:00.123Z) from 3 files, checksums verified".
    public var description: String {
        let time = RFC3339Time.format(milliseconds: timestamp)
        switch kind {
        case .database(let txid):
            let files = "\(fileCount) file\(fileCount == 1 ? "" : "s")"
            let check = verified ? "checksums verified" : "not verified against recorded checksums (the archive has none)"
            return "restored \(name) to TXID \(txid) (\(time)) from \(files), \(check)"
        case .plainFile(let mode):
            return "restored \(name) as of \(time) (mode 0\(String(mode & 0o7777, radix: 8)))"
        }
    }
}
