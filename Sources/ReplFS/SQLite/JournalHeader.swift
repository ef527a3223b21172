/// Facts about SQLite's rollback journal header.
///
/// See <https://www.sqlite.org/fileformat2.html#the_rollback_journal>. A
/// journal is "live" once its header starts with the 8-byte magic; SQLite's
/// commit point is the moment it stops being live: the file is deleted
/// (DELETE), truncated to zero (TRUNCATE), or its header is overwritten with
/// zeros (PERSIST, and exclusive locking mode). A journal that never carried the
/// magic was never the backing of a write, so invalidating it is not a commit.
public enum JournalHeader {
    /// 0xd9d505f920a163d7.
    public static let magic: [UInt8] = [0xD9, 0xD5, 0x05, 0xF9, 0x20, 0xA1, 0x63, 0xD7]

    /// Whether `bytes` (the start of a journal) begin with the magic.
    public static func hasMagic(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= magic.count else { return false }
        for i in 0..<magic.count where bytes[i] != magic[i] { return false }
        return true
    }
}
