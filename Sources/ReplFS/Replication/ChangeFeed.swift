import Foundation

/// The primary's recent changes, numbered, for the replica streams to follow.
///
/// The store reports each change once, on its commit path
/// (``StoreObserver``); the feed numbers it and keeps the most recent ones in
/// memory so every stream can send it without touching the disk. A stream
/// that falls further behind than the feed remembers is told so and catches
/// up from the LTX files instead. Waiting streams are woken on each change.
///
/// Each stream is a reader of the feed (``join()``), and the feed keeps
/// only what some reader has not read yet (within its byte and entry
/// limits): with every replica caught up, or none connected, it holds
/// almost nothing, so the primary's memory does not grow with its commits.
public final class ChangeFeed: StoreObserver, @unchecked Sendable {
    public struct Entry: Sendable {
        public var sequence: UInt64
        public var item: Item
    }

    /// What the streams carry: the store's changes, and the handoff marker
    /// that ends a primary's term (after its last change).
    public enum Item: Sendable {
        case change(StoreChange)
        case handoff(ReplicationMessage.Handoff)
    }

    public enum Next: Sendable {
        case entries([Entry])
        /// Entries after the given sequence were already dropped.
        case behind
    }

    private let condition = NSCondition()
    private var entries: [Entry] = []
    private var start = 0
    private var nextSequence: UInt64 = 1
    private var bytes = 0
    private let maximumBytes: Int
    private let maximumEntries: Int
    /// The next sequence each reader will ask for.
    private var readers: [Int: UInt64] = [:]
    private var nextReader = 0

    public init(maximumBytes: Int = 64 << 20, maximumEntries: Int = 100_000) {
        self.maximumBytes = maximumBytes
        self.maximumEntries = maximumEntries
    }

    /// Registers a reader that starts with the next change: the feed keeps
    /// changes from there until the reader has read them (or leaves).
    public func join() -> (reader: Int, sequence: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        nextReader += 1
        readers[nextReader] = nextSequence
        return (nextReader, nextSequence)
    }

    /// The reader starts again from the next change (it caught up from the
    /// LTX files): what it had not read is no longer kept for it.
    public func restart(_ reader: Int) -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        readers[reader] = nextSequence
        return nextSequence
    }

    public func leave(_ reader: Int) {
        condition.lock()
        readers[reader] = nil
        condition.unlock()
    }

    /// How many changes the feed holds now.
    public var heldEntries: Int {
        condition.lock()
        defer { condition.unlock() }
        return entries.count - start
    }

    public func storeDidChange(_ change: StoreChange) {
        append(.change(change))
    }

    /// Publishes a handoff: every stream sends it after everything before.
    public func publish(_ handoff: ReplicationMessage.Handoff) {
        append(.handoff(handoff))
    }

    private func append(_ item: Item) {
        condition.lock()
        entries.append(Entry(sequence: nextSequence, item: item))
        nextSequence += 1
        bytes += ChangeFeed.size(of: item)
        // A change larger than the whole budget is dropped at once too: the
        // streams then catch up from the LTX files, read in parts, instead of
        // the feed holding a bulk load's transaction in memory.
        // Everything every reader has read is released.
        let unread = readers.values.min() ?? nextSequence
        while entries.count > start
            && (entries[start].sequence < unread || entries.count - start > maximumEntries || bytes > maximumBytes)
        {
            bytes -= ChangeFeed.size(of: entries[start].item)
            // Release the content now; the slot goes with the next compaction.
            entries[start].item = .change(.removed(path: ""))
            start += 1
        }
        if start > 4096 && start * 2 > entries.count {
            entries.removeFirst(start)
            start = 0
        }
        condition.broadcast()
        condition.unlock()
    }

    /// The entries from `sequence` on, waiting up to `timeout` for the first;
    /// `reader` has read everything before `sequence`.
    public func next(from sequence: UInt64, timeout: TimeInterval, reader: Int) -> Next {
        condition.lock()
        defer { condition.unlock() }
        readers[reader] = sequence
        let deadline = Date(timeIntervalSinceNow: timeout)
        while nextSequence <= sequence {
            if !condition.wait(until: deadline) { return .entries([]) }
        }
        let oldest = entries.count > start ? entries[start].sequence : nextSequence
        if sequence < oldest { return .behind }
        let index = start + Int(sequence - oldest)
        return .entries(Array(entries[index...].prefix(256)))
    }

    /// Waits (up to `timeout`) until a change after `sequence` is
    /// published, without being a reader: nothing is kept for the caller,
    /// which reads the changes elsewhere (the archiver, from the LTX log).
    /// Returns the newest sequence.
    public func waitForChange(after sequence: UInt64, timeout: TimeInterval) -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while nextSequence <= sequence + 1 {
            if !condition.wait(until: deadline) { break }
        }
        return nextSequence - 1
    }

    /// Wakes every waiter (the role changed, or a stream is closing).
    public func wakeAll() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    private static func size(of item: Item) -> Int {
        switch item {
        case .change(.transaction(_, _, _, .bytes(let bytes))): return bytes.count + 64
        case .change(.file(_, _, let content)): return content.count + 64
        default: return 64
        }
    }
}
