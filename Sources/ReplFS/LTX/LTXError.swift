#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that can go wrong while writing, reading, chaining or applying
/// LTX files.
///
/// Each case carries enough context (page number, byte offset, file name,
/// stored and computed values) that the message alone tells an operator what
/// is wrong and where, without re-running anything under a debugger. All LTX
/// APIs use typed throws with this type so callers can switch over failures.
public enum LTXError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A header field breaks a format rule (magic, flags, page size, TXIDs,
    /// checksum rules, WAL fields).
    case invalidHeader(reason: String)

    /// A page handed to the encoder (or announced by a frame) breaks a rule:
    /// order, lock page, beyond `commit`, wrong size, incomplete snapshot.
    case invalidPage(PageNumber, reason: String)

    /// A page frame on disk is malformed: bad flags, bad size prefix, or LZ4
    /// data that does not decompress to exactly one page.
    case corruptPage(PageNumber, offset: Int, reason: String)

    /// A structural problem outside any single page frame, such as a page
    /// index that disagrees with the frames, at a byte offset of the file.
    case corrupt(offset: Int, reason: String)

    /// The input ended at `offset` while `expected` still had to be read.
    case truncated(offset: Int, expected: String)

    /// A stored checksum (`what`: "file", "post-apply", "pre-apply") differs
    /// from the one computed from the data.
    case checksumMismatch(what: String, stored: Checksum, computed: Checksum)

    /// The trailer's checksum fields are malformed (missing flag, non-zero
    /// with `noChecksum`, wrong value for a deleted database).
    case invalidTrailer(reason: String)

    /// Bytes follow the trailer; LTX files end exactly after it.
    case trailingBytes(offset: Int)

    /// An API was used out of order (for example `append` after `finish`);
    /// this is a programming error in the caller, not bad data.
    case misuse(String)

    /// A file name is not `%016x-%016x.ltx`, or disagrees with its header.
    case invalidFileName(String)

    /// A system call failed; `errno` is the raw error number.
    case io(operation: String, path: String, errno: Int32)

    /// Two files of a chain do not fit together (gap, overlap, checksum
    /// break, page size change) or the chain does not start where required.
    case brokenChain(file: String, reason: String)

    /// An output file exists and the caller did not ask to replace it.
    case outputExists(path: String)

    /// `underlying` happened while processing `file`, so multi-file tools can
    /// name the culprit.
    indirect case inFile(String, LTXError)

    /// A one-line human-readable message.
    public var description: String {
        switch self {
        case .invalidHeader(let reason):
            return "invalid header: \(reason)"
        case .invalidPage(let pgno, let reason):
            return "page \(pgno): \(reason)"
        case .corruptPage(let pgno, let offset, let reason):
            return "page \(pgno) at offset \(offset): \(reason)"
        case .corrupt(let offset, let reason):
            return "at offset \(offset): \(reason)"
        case .truncated(let offset, let expected):
            return "truncated at offset \(offset): expected \(expected)"
        case .checksumMismatch(let what, let stored, let computed):
            return "\(what) checksum mismatch: stored \(stored) computed \(computed)"
        case .invalidTrailer(let reason):
            return "invalid trailer: \(reason)"
        case .trailingBytes(let offset):
            return "unexpected data after the trailer at offset \(offset)"
        case .misuse(let message):
            return "API misuse: \(message)"
        case .invalidFileName(let message):
            return "invalid file name: \(message)"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        case .brokenChain(let file, let reason):
            return "\(file): \(reason)"
        case .outputExists(let path):
            return "\(path) exists: refusing to overwrite it (--force replaces it)"
        case .inFile(let file, let underlying):
            return "\(file): \(underlying)"
        }
    }
}
