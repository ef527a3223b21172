import CSQLite

#if canImport(Glibc)
import Glibc
#endif

/// A minimal SQLite connection for workloads: real SQLite, in this process.
final class SQLiteConnection {
    let path: String
    private let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    struct Failure: Error, CustomStringConvertible {
        var code: Int32
        var message: String
        var description: String { "sqlite error \(code): \(message)" }
    }

    init(path: String, busyTimeout: Int32 = 5000) throws {
        self.path = path
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "open failed"
            sqlite3_close_v2(db)
            throw Failure(code: rc, message: "\(path): \(message)")
        }
        handle = db
        sqlite3_busy_timeout(db, busyTimeout)
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    private func check(_ rc: Int32, _ what: String) throws {
        guard rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW else {
            throw Failure(code: rc, message: "\(what): \(String(cString: sqlite3_errmsg(handle))) (extended code \(sqlite3_extended_errcode(handle)))")
        }
    }

    /// Runs one or more statements without results.
    func execute(_ sql: String) throws {
        try check(sqlite3_exec(handle, sql, nil, nil, nil), sql)
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let statement = statements[sql] {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
            return statement
        }
        var statement: OpaquePointer?
        try check(sqlite3_prepare_v2(handle, sql, -1, &statement, nil), sql)
        guard let statement else { throw Failure(code: SQLITE_ERROR, message: "empty statement: \(sql)") }
        statements[sql] = statement
        return statement
    }

    enum Value {
        case integer(Int64)
        case text(String)
        case blob([UInt8])
        case zeroBlob(Int32)
        case null
    }

    private func bind(_ statement: OpaquePointer, _ values: [Value]) {
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (index, value) in values.enumerated() {
            let position = Int32(index + 1)
            switch value {
            case .integer(let v): sqlite3_bind_int64(statement, position, v)
            case .text(let v): sqlite3_bind_text(statement, position, v, -1, transient)
            case .blob(let v): _ = v.withUnsafeBytes { sqlite3_bind_blob(statement, position, $0.baseAddress, Int32($0.count), transient) }
            case .zeroBlob(let n): sqlite3_bind_zeroblob(statement, position, n)
            case .null: sqlite3_bind_null(statement, position)
            }
        }
    }

    /// Runs a statement with bound values; returns changes.
    @discardableResult
    func run(_ sql: String, _ values: [Value] = []) throws -> Int32 {
        let statement = try prepared(sql)
        bind(statement, values)
        var rc = sqlite3_step(statement)
        while rc == SQLITE_ROW { rc = sqlite3_step(statement) }
        defer { sqlite3_reset(statement) }
        try check(rc, sql)
        return sqlite3_changes(handle)
    }

    /// The first column of every row, as integers.
    func integers(_ sql: String, _ values: [Value] = []) throws -> [Int64] {
        let statement = try prepared(sql)
        bind(statement, values)
        defer { sqlite3_reset(statement) }
        var result: [Int64] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_ROW {
                result.append(sqlite3_column_int64(statement, 0))
            } else {
                try check(rc, sql)
                return result
            }
        }
    }

    func integer(_ sql: String, _ values: [Value] = []) throws -> Int64 {
        guard let first = try integers(sql, values).first else { throw Failure(code: SQLITE_ERROR, message: "no row: \(sql)") }
        return first
    }

    /// The first column of every row, as text.
    func strings(_ sql: String) throws -> [String] {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement) }
        var result: [String] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_ROW {
                result.append(sqlite3_column_text(statement, 0).map { String(cString: $0) } ?? "")
            } else {
                try check(rc, sql)
                return result
            }
        }
    }
}
