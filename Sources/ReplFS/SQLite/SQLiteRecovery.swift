import CSQLite

/// Lets SQLite itself finish what a crash interrupted in a database file.
///
/// Opening the database and reading from it makes SQLite roll back a hot
/// rollback journal; a WAL checkpoint in TRUNCATE mode, then closing the last
/// connection, folds every committed WAL frame into the database file and
/// removes the WAL. Afterwards the database file alone is the content, which
/// is what ReplFS's recovery compares with the LTX log. Using the real SQLite
/// here (rather than replaying journals by hand) keeps recovery exactly as
/// SQLite defines it.
public enum SQLiteRecovery {
    /// Runs recovery on the database at the absolute `path`. Called only
    /// while nothing else has the file open (before the mount starts).
    public static func run(path: String) -> Result<Void, SQLiteRecoveryError> {
        var handle: OpaquePointer?
        var rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE, nil)
        defer { sqlite3_close_v2(handle) }
        guard rc == SQLITE_OK, let db = handle else {
            return .failure(SQLiteRecoveryError(path: path, message: handle.map { String(cString: sqlite3_errmsg($0)) } ?? "open failed (\(rc))"))
        }
        sqlite3_busy_timeout(db, 5000)
        for sql in ["SELECT count(*) FROM sqlite_schema", "PRAGMA wal_checkpoint(TRUNCATE)"] {
            rc = sqlite3_exec(db, sql, nil, nil, nil)
            guard rc == SQLITE_OK else {
                return .failure(SQLiteRecoveryError(path: path, message: "\(sql): \(String(cString: sqlite3_errmsg(db)))"))
            }
        }
        return .success(())
    }
}

extension SQLiteRecovery {
    /// Lets SQLite roll back the hot journal of the database at the
    /// absolute `path` (by opening it and reading), and nothing else: a
    /// WAL is left as it is. The caller keeps every other connection out.
    public static func rollBackJournal(path: String) -> Result<Void, SQLiteRecoveryError> {
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE, nil)
        defer { sqlite3_close_v2(handle) }
        guard rc == SQLITE_OK, let db = handle else {
            return .failure(SQLiteRecoveryError(path: path, message: handle.map { String(cString: sqlite3_errmsg($0)) } ?? "open failed (\(rc))"))
        }
        sqlite3_busy_timeout(db, 5000)
        guard sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", nil, nil, nil) == SQLITE_OK else {
            return .failure(SQLiteRecoveryError(path: path, message: String(cString: sqlite3_errmsg(db))))
        }
        return .success(())
    }
}

/// SQLite could not open or recover a database.
public struct SQLiteRecoveryError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    public var description: String { "\(path): SQLite recovery failed: \(message)" }
}
