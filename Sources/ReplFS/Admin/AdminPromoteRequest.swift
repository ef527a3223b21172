/// The body of `POST /promote` (optional: no body means not forced).
public struct AdminPromoteRequest: Codable, Sendable, Equatable {
    /// Take the lease even if the current primary does not hand it over.
    public var force: Bool?

    public init(force: Bool) {
        self.force = force
    }
}
