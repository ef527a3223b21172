/// What a successful promote, demote, export or import reports back: a line
/// for the operator and, where it applies, the new term, the new primary and
/// how long it took.
public struct AdminActionResult: Codable, Sendable, Equatable {
    /// One line for the operator ("promoted node-b at epoch 8").
    public var message: String
    /// The epoch after the action (promote, demote).
    public var epoch: Epoch?
    /// The primary after the action (promote, demote).
    public var primary: String?
    /// How long the action took.
    public var tookMs: Int?

    public init(message: String, epoch: Epoch? = nil, primary: String? = nil, tookMs: Int? = nil) {
        self.message = message
        self.epoch = epoch
        self.primary = primary
        self.tookMs = tookMs
    }
}
