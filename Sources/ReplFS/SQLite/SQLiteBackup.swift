import CSQLite

/// Copies one SQLite database into another with SQLite's online backup API,
/// which takes the proper locks on both: used by `replfsd import` to write a
/// database into the mount as one transaction (captured, logged and
/// replicated like any other).
public enum SQLiteBackup {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var message: String
        public var description: String { "\(path): \(message)" }
    }

    /// Checks `path` is a readable, intact SQLite database (`quick_check`).
    public static func check(_ path: String) -> Result<Void, Failure> {
        var handle: OpaquePointer?
        defer { sqlite3_close_v2(handle) }
        guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READONLY, nil) == SQLITE_OK, let db = handle else {
            return .failure(Failure(path: path, message: "cannot open: \(message(handle))"))
        }
        var statement: OpaquePointer?
        defer { sqlite3_finalize(statement) }
        guard sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &statement, nil) == SQLITE_OK else {
            return .failure(Failure(path: path, message: "not a SQLite database: \(message(db))"))
        }
        guard sqlite3_step(statement) == SQLITE_ROW, let text = sqlite3_column_text(statement, 0) else {
            return .failure(Failure(path: path, message: "not a SQLite database: \(message(db))"))
        }
        let result = String(cString: text)
        return result == "ok" ? .success(()) : .failure(Failure(path: path, message: "fails quick_check: \(result)"))
    }

    /// Replaces the content of `destination` (created if missing) with that
    /// of `source`, in one write transaction on the destination.
    public static func copy(from source: String, to destination: String, busyTimeout: Int32 = 10_000) -> Result<Void, Failure> {
        var sourceHandle: OpaquePointer?
        var destinationHandle: OpaquePointer?
        defer {
            sqlite3_close_v2(sourceHandle)
            sqlite3_close_v2(destinationHandle)
        }
        guard sqlite3_open_v2(source, &sourceHandle, SQLITE_OPEN_READONLY, nil) == SQLITE_OK, let from = sourceHandle else {
            return .failure(Failure(path: source, message: "cannot open: \(message(sourceHandle))"))
        }
        guard sqlite3_open_v2(destination, &destinationHandle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK,
            let to = destinationHandle
        else {
            return .failure(Failure(path: destination, message: "cannot open: \(message(destinationHandle))"))
        }
        sqlite3_busy_timeout(to, busyTimeout)
        sqlite3_busy_timeout(from, busyTimeout)
        guard let backup = sqlite3_backup_init(to, "main", from, "main") else {
            return .failure(Failure(path: destination, message: message(to)))
        }
        var rc: Int32
        repeat {
            rc = sqlite3_backup_step(backup, -1)
            if rc == SQLITE_BUSY || rc == SQLITE_LOCKED { sqlite3_sleep(10) }
        } while rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED
        let finished = sqlite3_backup_finish(backup)
        guard rc == SQLITE_DONE, finished == SQLITE_OK else {
            return .failure(Failure(path: destination, message: message(to)))
        }
        return .success(())
    }

    private static func message(_ handle: OpaquePointer?) -> String {
        handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
    }
}
