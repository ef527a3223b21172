import Testing

@testable import ReplFS

@Suite("Database keys")
struct DatabaseKeyTests {
    @Test("short paths are escaped whole and reversibly")
    func short() {
        #expect(DatabaseKey.escape("sub/app%1.db") == "sub%2Fapp%251.db")
        #expect(DatabaseKey.unescape(DatabaseKey.escape("sub/app%1.db")) == "sub/app%1.db")
        #expect(!DatabaseKey.isShortened(DatabaseKey.escape("sub/app.db"), of: "sub/app.db"))
    }

    @Test("long paths get a bounded key: a readable prefix of whole escapes, then a hash of the whole path")
    func long() {
        let deep = (0..<20).map { "dir-\($0)-" + String(repeating: "é", count: 20) }.joined(separator: "/") + "/db.sqlite"
        let key = DatabaseKey.escape(deep)
        #expect(key.utf8.count <= DatabaseKey.readableLimit)
        #expect(key.hasPrefix("dir-0-"))
        #expect(!key.contains("/"))
        // The prefix ends on a whole escape: no "%2" left dangling before the hash.
        let prefix = key[..<key.lastIndex(of: "~")!]
        #expect(!prefix.hasSuffix("%") && !prefix.hasSuffix("%2"))
        #expect(DatabaseKey.isShortened(key, of: deep))
        // Paths that share the prefix still get their own keys.
        #expect(DatabaseKey.escape(deep + "x") != key)
        #expect(DatabaseKey.escape(deep) == key, "stable")
    }
}
