/// Reads which pages of a database are on its freelist.
///
/// See <https://www.sqlite.org/fileformat2.html#the_freelist>: page 1 holds
/// the first trunk page (offset 32) and the total count (offset 36); each
/// trunk page lists the next trunk and its leaf pages. Recovery needs this
/// because SQLite does not journal free pages it reuses: rolling back a hot
/// journal restores every page that held data but leaves reused free pages
/// with the rolled-back transaction's bytes (harmless to SQLite, but not the
/// bytes the log recorded).
public enum Freelist {
    /// The trunk and leaf pages, or nil if the list is malformed.
    /// `read` returns the bytes of a page.
    public static func pages(pageSize: Int, pageCount: UInt32, read: (UInt32) -> [UInt8]?) -> Set<UInt32>? {
        guard let first = read(1), first.count >= 40 else { return nil }
        let (trunkStart, total) = first.withUnsafeBytes {
            (BigEndian.load(UInt32.self, from: $0, at: 32), BigEndian.load(UInt32.self, from: $0, at: 36))
        }
        var result = Set<UInt32>()
        var trunk = trunkStart
        while trunk != 0 {
            guard trunk <= pageCount, !result.contains(trunk), result.count <= Int(total), let page = read(trunk), page.count == pageSize else {
                return nil
            }
            result.insert(trunk)
            let (next, leaves) = page.withUnsafeBytes { (BigEndian.load(UInt32.self, from: $0, at: 0), Int(BigEndian.load(UInt32.self, from: $0, at: 4))) }
            guard leaves <= (pageSize - 8) / 4 else { return nil }
            for index in 0..<leaves {
                let leaf = page.withUnsafeBytes { BigEndian.load(UInt32.self, from: $0, at: 8 + 4 * index) }
                guard leaf >= 1, leaf <= pageCount else { return nil }
                result.insert(leaf)
            }
            trunk = next
        }
        return result.count == Int(total) ? result : nil
    }
}
