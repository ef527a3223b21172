import Foundation

/// The directory name of a database's LTX log: its path relative to the
/// mount with `%` and `/` percent-escaped ("sub/app.db" -> "sub%2Fapp.db").
///
/// Escaping (rather than hashing) keeps `ls DATA/ltx` readable for an
/// operator and makes the mapping reversible for recovery.
enum DatabaseKey {
    static func escape(_ path: String) -> String {
        path.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
    }

    static func unescape(_ key: String) -> String {
        key.replacingOccurrences(of: "%2F", with: "/").replacingOccurrences(of: "%25", with: "%")
    }
}
