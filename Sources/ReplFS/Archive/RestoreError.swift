/// Why `replfsd restore` could not restore: a stable code, a one-line
/// message naming the database (or file) and what is wrong, the path it is
/// about, and the cause underneath if there is one.
///
/// Every refusal leaves nothing at the output path: a partial or unverified
/// database there would look like a good, older one.
public struct RestoreError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable {
        /// The name is neither an archived database nor an archived plain file.
        case notArchived = "not-archived"
        /// Nothing of it was archived at or before the target.
        case noBackup = "no-backup"
        /// Files lie within the target, but none starts a database
        /// (no snapshot, no file from TXID 1).
        case noStart = "no-start"
        /// A TXID is missing between the start and the newest file within
        /// the target.
        case nonContiguous = "non-contiguous"
        /// `--txid N`, but no chain of archived files ends exactly at N.
        case txidUnavailable = "txid-unavailable"
        /// The newest version of a plain file at or before the target is its removal.
        case removed
        /// A target that does not apply (a TXID for a plain file), or a bad name.
        case invalidTarget = "invalid-target"
        /// The rebuilt database's checksum differs from the one recorded for
        /// its TXID, or the archive records checksums but none for it.
        case checksumMismatch = "checksum-mismatch"
        /// An archived LTX file is damaged or does not fit the chain.
        case corrupt
        /// The output exists and `force` was not given, or a WAL or journal
        /// beside it would be applied to the restored database.
        case outputExists = "output-exists"
        /// A system call failed.
        case io
    }

    public var code: Code
    public var message: String
    public var path: String?
    /// The LTX file's problem, for `.corrupt` and some `.io`.
    public var ltx: LTXError?
    public var errno: Errno?

    public init(_ code: Code, _ message: String, path: String? = nil, ltx: LTXError? = nil, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.ltx = ltx
        self.errno = errno
    }

    public var description: String {
        var text = message
        if let path { text = "\(path): \(text)" }
        if let ltx { text += ": \(ltx)" }
        if let errno { text += " (\(errno))" }
        return text
    }
}
