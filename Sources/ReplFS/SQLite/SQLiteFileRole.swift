/// What a file in the mount is to SQLite, judged by its name.
///
/// SQLite names its auxiliary files after the database: `NAME-journal`,
/// `NAME-wal` and `NAME-shm`. Everything else is either a database (known by
/// its header) or a plain file.
public enum SQLiteFileRole: Sendable, Equatable {
    /// The rollback journal of the database at the given path.
    case journal(database: String)
    /// The write-ahead log of the database at the given path.
    case wal(database: String)
    /// The WAL-index shared memory file of the database at the given path.
    case sharedMemory(database: String)
    /// A database or a plain file.
    case main

    public static func classify(_ path: String) -> SQLiteFileRole {
        if let base = path.strippingSuffix("-journal") { return .journal(database: base) }
        if let base = path.strippingSuffix("-wal") { return .wal(database: base) }
        if let base = path.strippingSuffix("-shm") { return .sharedMemory(database: base) }
        return .main
    }
}

extension String {
    func strippingSuffix(_ suffix: String) -> String? {
        guard hasSuffix(suffix), count > suffix.count else { return nil }
        return String(dropLast(suffix.count))
    }
}
