#if canImport(Glibc)
import Glibc
#endif

/// Reads a whole `-wal` file the way SQLite's WAL recovery does: the header,
/// then frames for as long as their salts match the header's and their
/// running checksums hold. The committed part is what ends at the last
/// valid commit frame; anything after it is not part of the database.
///
/// Used when a program other than SQLite wrote the WAL (a copy of a live
/// database and its `-wal`): there were no commit points to watch, so the
/// committed content is read from the file once it is complete.
/// See <https://www.sqlite.org/fileformat2.html#walformat>.
public struct WALScanner {
    /// The committed part of a WAL.
    public struct Committed: Equatable, Sendable {
        public var header: WALHeader
        /// Index (1-based) of the last valid commit frame.
        public var lastCommit: Int
        /// Database size in pages after that commit.
        public var commitSize: UInt32
        /// Page number to the last committed frame holding it.
        public var pages: [PageNumber: Int]
    }

    /// The committed part of the WAL open at `fd`; nil if it has no valid
    /// header or no valid commit frame (SQLite then ignores it).
    public static func committed(fd: Int32) -> Committed? {
        var headerBytes = [UInt8](repeating: 0, count: WALHeader.size)
        guard case .success(WALHeader.size) = headerBytes.withUnsafeMutableBytes({ Syscall.pread(fd, into: $0, at: 0) }),
            let header = headerBytes.withUnsafeBytes({ WALHeader($0) }), header.version == WALHeader.formatVersion
        else { return nil }
        let bigEndian = header.bigEndianChecksums
        var sum = headerBytes.withUnsafeBytes { checksum(UnsafeRawBufferPointer(rebasing: $0[0..<24]), bigEndian: bigEndian, from: (0, 0)) }
        guard sum == (header.checksum1, header.checksum2) else { return nil }

        let frameSize = WALFrameHeader.size + header.pageSize
        var frame = [UInt8](repeating: 0, count: frameSize)
        var pending: [PageNumber: Int] = [:]
        var result: Committed?
        var index = 1
        while true {
            let read = frame.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: header.frameOffset(index)) }
            guard case .success(frameSize) = read else { break }
            let valid = frame.withUnsafeBytes { bytes -> Bool in
                let frameHeader = WALFrameHeader(bytes)
                guard frameHeader.salt1 == header.salt1, frameHeader.salt2 == header.salt2, frameHeader.pageNumber > 0 else { return false }
                var next = checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<8]), bigEndian: bigEndian, from: sum)
                next = checksum(UnsafeRawBufferPointer(rebasing: bytes[WALFrameHeader.size...]), bigEndian: bigEndian, from: next)
                guard next == (frameHeader.checksum1, frameHeader.checksum2) else { return false }
                sum = next
                pending[PageNumber(frameHeader.pageNumber)] = index
                if frameHeader.isCommit {
                    var pages = result?.pages ?? [:]
                    pages.merge(pending) { _, new in new }
                    pending.removeAll()
                    result = Committed(header: header, lastCommit: index, commitSize: frameHeader.commitSize, pages: pages)
                }
                return true
            }
            guard valid else { break }
            index += 1
        }
        return result
    }

    /// SQLite's WAL checksum: over 32-bit words in pairs, in the byte order
    /// the magic names, continuing from `start`.
    static func checksum(_ bytes: UnsafeRawBufferPointer, bigEndian: Bool, from start: (UInt32, UInt32)) -> (UInt32, UInt32) {
        var (s1, s2) = start
        var offset = 0
        while offset + 8 <= bytes.count {
            var x0 = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
            var x1 = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            if bigEndian {
                x0 = UInt32(bigEndian: x0)
                x1 = UInt32(bigEndian: x1)
            } else {
                x0 = UInt32(littleEndian: x0)
                x1 = UInt32(littleEndian: x1)
            }
            s1 = s1 &+ x0 &+ s2
            s2 = s2 &+ x1 &+ s1
            offset += 8
        }
        return (s1, s2)
    }
}
