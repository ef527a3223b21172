#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A segment: many whole LTX files of one database, one after another, in
/// TXID order, in one file named `<first TXID, 16 hex digits>.segment`.
///
/// One file per transaction costs an inode created, and at retention
/// deleted, per commit; at thousands of commits a second that is most of
/// the log's work, and a directory of a million names slows every lookup.
/// A segment costs one `pwrite` per transaction and one `unlink` per few
/// thousand. The LTX files inside are byte for byte what upstream's tools
/// read: ``LTXSegmentReader`` hands them out one at a time, and
/// `replfsd log export` writes them as single files.
///
/// Layout: the 8-byte header `LTXS` + version (u32, big-endian, 1), then
/// records of a big-endian u32 length and that many bytes of one LTX file.
/// The end of the file, or a zero length, ends the records.
public enum LTXSegment {
    public static let magic: [UInt8] = Array("LTXS".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 8
    /// Bytes before each record's LTX file.
    public static let recordPrefixSize = 4
    public static let fileSuffix = ".segment"

    /// The 8 bytes every segment starts with.
    public static var header: [UInt8] {
        var bytes = magic
        BigEndian.append(version, to: &bytes)
        return bytes
    }

    /// The name of the segment whose first record starts at `txid`.
    public static func name(firstTXID txid: TXID) -> String {
        HexFormat.sixteenDigits(txid.rawValue) + fileSuffix
    }

    /// The first TXID a segment's name gives, or nil for other names.
    public static func firstTXID(ofName name: String) -> TXID? {
        guard name.hasSuffix(fileSuffix) else { return nil }
        guard let value = HexFormat.parseSixteenDigits(name.dropLast(fileSuffix.count)), value > 0 else { return nil }
        return TXID(value)
    }

    /// Whether `path` names a segment (by its name, not its content).
    public static func isSegment(path: String) -> Bool {
        firstTXID(ofName: String(path.split(separator: "/").last ?? Substring(path))) != nil
    }

    /// The TXID range of an LTX file from its first 32 bytes, if they hold an
    /// LTX header.
    static func txidRange(_ bytes: UnsafeRawBufferPointer) -> (min: TXID, max: TXID)? {
        guard bytes.count >= 32, bytes[0] == 0x4C, bytes[1] == 0x54, bytes[2] == 0x58, bytes[3] == 0x31 else { return nil }
        let minTXID = BigEndian.load(UInt64.self, from: bytes, at: 16)
        let maxTXID = BigEndian.load(UInt64.self, from: bytes, at: 24)
        guard minTXID > 0, maxTXID >= minTXID else { return nil }
        return (TXID(minTXID), TXID(maxTXID))
    }
}

/// Reads the records of a segment in order, through a buffer: a segment of
/// thousands of small files costs a few large reads, not one per record.
///
/// Records are checked for shape (a length that fits, an LTX header); the
/// LTX decoder checks their checksums when they are used. The reader stops
/// at the first record that does not fit: ``end`` is where valid records
/// end, which is where a torn tail is cut.
public struct LTXSegmentReader {
    /// One record: where it lies and its bytes.
    public struct Record: Sendable {
        /// Offset of the record's length prefix in the segment.
        public var offset: Int64
        public var minTXID: TXID
        public var maxTXID: TXID
        /// The whole LTX file.
        public var bytes: [UInt8]
        /// Offset just past the record.
        public var end: Int64 { offset + Int64(LTXSegment.recordPrefixSize + bytes.count) }
    }

    private let fd: Int32
    private let size: Int64
    private var buffer: [UInt8] = []
    /// Segment offset of `buffer[0]`.
    private var bufferStart: Int64 = 0
    /// Where the next record starts.
    public private(set) var end: Int64
    /// Whether the segment's header was valid (an empty or foreign file has none).
    public let hasHeader: Bool

    private static let chunk = 1 << 20

    /// Reads from `fd` (which the caller closes), from the first record.
    public init(fileDescriptor fd: Int32) {
        self.fd = fd
        size = (try? Syscall.fstat(fd).get()).map { Int64($0.st_size) } ?? 0
        var header = [UInt8](repeating: 0, count: LTXSegment.headerSize)
        let count = header.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }
        hasHeader = count == .success(LTXSegment.headerSize) && header == LTXSegment.header
        end = hasHeader ? Int64(LTXSegment.headerSize) : 0
    }

    /// The next record, or nil at the end of the valid records.
    public mutating func next() -> Record? {
        guard hasHeader, end + Int64(LTXSegment.recordPrefixSize) <= size else { return nil }
        guard let prefix = bytes(at: end, count: LTXSegment.recordPrefixSize) else { return nil }
        let length = prefix.withUnsafeBytes { Int(BigEndian.load(UInt32.self, from: $0, at: 0)) }
        let start = end + Int64(LTXSegment.recordPrefixSize)
        guard length >= LTXHeader.size + LTXTrailer.size, start + Int64(length) <= size,
            let bytes = bytes(at: start, count: length),
            let range = bytes.withUnsafeBytes({ LTXSegment.txidRange($0) })
        else { return nil }
        let record = Record(offset: end, minTXID: range.min, maxTXID: range.max, bytes: bytes)
        end = record.end
        return record
    }

    /// `count` bytes at `offset`, through the buffer (records larger than
    /// the buffer are read directly).
    private mutating func bytes(at offset: Int64, count: Int) -> [UInt8]? {
        if offset >= bufferStart, offset + Int64(count) <= bufferStart + Int64(buffer.count) {
            let from = Int(offset - bufferStart)
            return Array(buffer[from..<from + count])
        }
        if count > Self.chunk {
            var direct = [UInt8](repeating: 0, count: count)
            guard Self.readFully(fd, into: &direct, at: offset) else { return nil }
            return direct
        }
        let want = Int(min(Int64(Self.chunk), size - offset))
        guard want >= count else { return nil }
        var fresh = [UInt8](repeating: 0, count: want)
        guard Self.readFully(fd, into: &fresh, at: offset) else { return nil }
        buffer = fresh
        bufferStart = offset
        return Array(buffer[0..<count])
    }

    private static func readFully(_ fd: Int32, into bytes: inout [UInt8], at offset: Int64) -> Bool {
        let total = bytes.count
        return bytes.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: offset) } == .success(total)
    }
}

extension LTXSegment {
    /// A directory holding the LTX files of `paths` (segments, single LTX
    /// files, or directories of them) as single files, for tools that take
    /// single files: `paths` itself when it is one directory with no
    /// segment, else a temporary directory (`temporary`) the caller removes.
    public static func singleFiles(of paths: [String]) throws(LTXError) -> (directory: String, temporary: Bool) {
        var sources: [String] = []
        for path in paths {
            guard Syscall.isDirectory(path) else {
                sources.append(path)
                continue
            }
            let prefix = path.hasSuffix("/") ? path : path + "/"
            let names: [String]
            switch Syscall.listDirectory(path) {
            case .success(let listed): names = listed.sorted()
            case .failure(let error): throw .io(operation: "opendir", path: path, errno: error.rawValue)
            }
            sources += names.filter { firstTXID(ofName: $0) != nil || (try? LTXFileName(parsing: $0)) != nil }.map { prefix + $0 }
        }
        if paths.count == 1, !sources.contains(where: isSegment(path:)), sources.allSatisfy({ $0.hasPrefix(paths[0]) }), Syscall.isDirectory(paths[0]) {
            return (paths[0], false)
        }
        let directory: String
        switch Syscall.makeTemporaryDirectory(prefix: "replfs-ltx-") {
        case .success(let made): directory = made
        case .failure(let error): throw .io(operation: "mkdtemp", path: "replfs-ltx-XXXXXX", errno: error.rawValue)
        }
        for source in sources {
            let bytes: [UInt8]
            switch Syscall.readFile(source) {
            case .success(let read): bytes = read
            case .failure(let error): throw .io(operation: "read", path: source, errno: error.rawValue)
            }
            guard isSegment(path: source) else {
                try writeFile(bytes, to: directory + "/" + String(source.split(separator: "/").last ?? "file.ltx"))
                continue
            }
            // A segment is split into its records, one single file each.
            let fd: Int32
            switch Syscall.open(at: AT_FDCWD, source, flags: O_RDONLY) {
            case .success(let opened): fd = opened
            case .failure(let error): throw .io(operation: "open", path: source, errno: error.rawValue)
            }
            defer { Syscall.close(fd) }
            var reader = LTXSegmentReader(fileDescriptor: fd)
            guard reader.hasHeader else { throw .inFile(source, .invalidHeader(reason: "not an LTX segment (no LTXS header)")) }
            while let record = reader.next() {
                try writeFile(record.bytes, to: directory + "/" + LTXFileName(minTXID: record.minTXID, maxTXID: record.maxTXID).description)
            }
        }
        return (directory, true)
    }

    private static func writeFile(_ bytes: [UInt8], to path: String) throws(LTXError) {
        let written = Syscall.open(at: AT_FDCWD, path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).flatMap { fd in
            defer { Syscall.close(fd) }
            return bytes.withUnsafeBytes { Syscall.write(fd, $0) }
        }
        if case .failure(let error) = written { throw .io(operation: "write", path: path, errno: error.rawValue) }
    }

    /// Removes a directory ``singleFiles(of:)`` made.
    public static func removeTemporary(_ directory: String) {
        _ = Syscall.removeTree(directory)
    }
}
