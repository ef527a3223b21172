public enum ApplyRefusal: Error, CustomStringConvertible, Sendable {
    /// The file does not follow the database's position. Nothing changed.
    case notNext(database: String, position: Position, minTXID: TXID, preApply: Checksum)
    /// The file does not decode or its checksums do not hold. Nothing changed.
    case corrupt(database: String, LTXError)
    /// Applying it would not give the post-apply checksum it claims: this
    /// replica's content is not what the primary thinks it is.
    case postApplyMismatch(database: String, expected: Checksum, computed: Checksum)
    /// The batch could not be recorded in this node's log (a full disk):
    /// nothing changed; the same batch can be tried again.
    case io(database: String, Errno)
    /// The batch is in this node's log but its pages could not all be
    /// written (``UnappliedBatch``): the position has not moved; applying
    /// nothing (an empty batch) tries the write again.
    case stalled(database: String, Errno)

    public var description: String {
        switch self {
        case .notNext(let database, let position, let minTXID, let preApply):
            return "\(database): LTX file starting at TXID \(minTXID) (pre-apply \(preApply)) does not follow position \(position)"
        case .corrupt(let database, let error):
            return "\(database): corrupt LTX file: \(error)"
        case .postApplyMismatch(let database, let expected, let computed):
            return "\(database): applying would give checksum \(computed), the file says \(expected)"
        case .io(let database, let errno):
            return "\(database): cannot record the transactions: \(errno)"
        case .stalled(let database, let errno):
            return "\(database): recorded, but the database file cannot be written: \(errno)"
        }
    }

    /// The same input may succeed later (space returns): not the primary's fault.
    public var isRetryable: Bool {
        switch self {
        case .io, .stalled: return true
        default: return false
        }
    }
}
