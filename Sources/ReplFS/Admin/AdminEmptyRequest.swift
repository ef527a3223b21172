/// The body `POST /demote` accepts: none, or an empty JSON object (so a
/// malformed body is still refused rather than ignored).
struct AdminEmptyRequest: Codable, Sendable {}
