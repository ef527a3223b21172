import Crypto
import Foundation

/// The directory name of a database's LTX log: its path relative to the
/// mount with `%` and `/` percent-escaped ("sub/app.db" -> "sub%2Fapp.db").
///
/// Escaping (rather than hashing) keeps `ls DATA/ltx` readable for an
/// operator and makes the mapping reversible for recovery. A file name
/// holds at most 255 bytes while a path in the mount may be thousands, so
/// an escaped path longer than ``readableLimit`` is cut to a readable
/// prefix plus `~` and a hash of the whole path, and the log directory then
/// records the path in a file named ``pathFileName``, which recovery reads.
enum DatabaseKey {
    /// Longest key kept whole: leaves room under NAME_MAX (255) for the
    /// suffixes other names add to a key (asides, snapshot copies).
    static let readableLimit = 200
    /// Bytes of the escaped path a shortened key keeps before its hash.
    static let shortenedPrefix = 120
    /// The file in a log directory holding the database's path, for keys
    /// that do not carry it whole.
    static let pathFileName = "path"

    static func escape(_ path: String) -> String {
        let escaped = path.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
        guard escaped.utf8.count > readableLimit else { return escaped }
        // A prefix of whole characters and whole escapes, then the hash.
        var prefix = ""
        var bytes = 0
        var rest = Substring(escaped)
        while let first = rest.first {
            let piece = first == "%" ? rest.prefix(3) : rest.prefix(1)
            let size = piece.utf8.count
            guard bytes + size <= shortenedPrefix else { break }
            prefix += piece
            bytes += size
            rest = rest.dropFirst(piece.count)
        }
        let digest = SHA256.hash(data: Data(path.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        return prefix + "~" + digest
    }

    /// Whether `key` is cut short, so its log directory must record the path.
    static func isShortened(_ key: String, of path: String) -> Bool {
        unescape(key) != path
    }

    static func unescape(_ key: String) -> String {
        key.replacingOccurrences(of: "%2F", with: "/").replacingOccurrences(of: "%25", with: "%")
    }
}
