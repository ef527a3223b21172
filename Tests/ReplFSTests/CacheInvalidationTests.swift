import Testing

@testable import ReplFS

/// A replica drops from the kernel's page cache only what a batch changed.
@Suite("Cache invalidation")
struct CacheInvalidationTests {
    @Test("changed pages become sorted, coalesced byte ranges; pages past the new end are left to the tail")
    func coalescesPages() {
        let what = CacheInvalidation.pages([7, 1, 2, 3, 9, 12], pageSize: 4096, oldPageCount: 10, newPageCount: 10)
        #expect(what == .byteRanges([0..<12288, 24576..<28672, 32768..<36864]))
    }

    @Test("a file that shrank drops everything after its new end, joined to a changed last page")
    func shrinkDropsTheTail() {
        #expect(CacheInvalidation.pages([1, 5], pageSize: 1024, oldPageCount: 8, newPageCount: 5) == .byteRanges([0..<1024, 4096..<Int64.max]))
        #expect(CacheInvalidation.pages([1], pageSize: 1024, oldPageCount: 8, newPageCount: 5) == .byteRanges([0..<1024, 5120..<Int64.max]))
    }

    @Test("a file that grew drops its new pages only")
    func growth() {
        #expect(CacheInvalidation.pages([1, 11, 12], pageSize: 512, oldPageCount: 10, newPageCount: 12) == .byteRanges([0..<512, 5120..<6144]))
    }

    @Test("nothing changed drops no pages; too many scattered ranges drop the whole file")
    func limits() {
        #expect(CacheInvalidation.pages([], pageSize: 4096, oldPageCount: 3, newPageCount: 3) == .byteRanges([]))
        let scattered = (1...200).map { PageNumber(UInt32($0 * 2)) }
        #expect(CacheInvalidation.pages(scattered, pageSize: 4096, oldPageCount: 400, newPageCount: 400) == .wholeFile)
        let contiguous = (1...200).map { PageNumber(UInt32($0)) }
        #expect(CacheInvalidation.pages(contiguous, pageSize: 4096, oldPageCount: 400, newPageCount: 400) == .byteRanges([0..<(200 * 4096)]))
    }
}
