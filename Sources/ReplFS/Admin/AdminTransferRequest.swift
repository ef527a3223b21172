/// The body of `POST /export` and `POST /import`: which database, and the
/// file on the daemon's machine to write to or read from.
///
/// The path must be absolute: the daemon's working directory is not the
/// operator's (the CLI resolves a relative path before sending it).
public struct AdminTransferRequest: Codable, Sendable, Equatable {
    /// The database's name as in `status` ("db.sqlite").
    public var database: String
    /// An absolute path.
    public var path: String

    public init(database: String, path: String) {
        self.database = database
        self.path = path
    }
}
