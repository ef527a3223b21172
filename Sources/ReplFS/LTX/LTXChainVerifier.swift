#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Verifies that a set of LTX files is intact and forms one unbroken history.
///
/// Each file is decoded completely (so every checksum inside it is checked),
/// then the files, ordered by `minTXID`, must be contiguous (`minTXID` is the
/// previous `maxTXID + 1`), and each file's
/// pre-apply checksum must equal the previous file's post-apply checksum when
/// both track checksums. This is what a replica or a restore needs before it
/// trusts a chain; errors name the offending file.
public struct LTXChainVerifier: Sendable {
    /// One verified file: what the chain rules look at.
    struct Link: Sendable {
        var path: String
        var header: LTXHeader
        var trailer: LTXTrailer
    }

    /// Whether the first file must be a snapshot (`minTXID == 1`). Turn off
    /// to verify a tail of a longer history, e.g. files after a checkpoint.
    public var requireSnapshotStart: Bool

    /// Whether a file may start inside the range already covered
    /// (`minTXID <= previous max`), as long as it reaches further
    /// (`maxTXID > previous max`). A backup archive's compacted file holds
    /// the final version of every page changed in its range, so applied on
    /// the state at any TXID of that range it gives the state at its end:
    /// a restore chains a snapshot, compactions and level-0 files this way.
    /// Such a file's pre-apply checksum describes the state before its own
    /// range, not the previous file's end, so it is not compared.
    public var allowOverlap: Bool

    /// Creates a verifier.
    public init(requireSnapshotStart: Bool = true, allowOverlap: Bool = false) {
        self.requireSnapshotStart = requireSnapshotStart
        self.allowOverlap = allowOverlap
    }

    /// Verifies every file named `%016x-%016x.ltx` in `directory`; other
    /// entries (temporary files, for instance) are ignored.
    public func verify(directory: String) throws(LTXError) -> LTXChainSummary {
        try verify(files: LTXChainVerifier.files(inDirectory: directory))
    }

    /// Verifies the given files, in any order, as one chain.
    ///
    /// If a file's name has the canonical LTX form, it must agree with the
    /// header's TXID range; other names are accepted as they are.
    public func verify(files: [String]) throws(LTXError) -> LTXChainSummary {
        var links: [Link] = []
        links.reserveCapacity(files.count)
        for path in files {
            links.append(try LTXChainVerifier.verifyFile(path))
        }
        links.sort { ($0.header.minTXID, $0.header.maxTXID) < ($1.header.minTXID, $1.header.maxTXID) }

        var previous: Link?
        for link in links {
            try checkLink(previous: previous, header: link.header, path: link.path)
            previous = link
        }
        guard let first = links.first, let last = links.last else {
            throw .brokenChain(file: "(no files)", reason: "no LTX files to verify")
        }
        return LTXChainSummary(
            fileCount: links.count,
            firstTXID: first.header.minTXID,
            lastTXID: last.header.maxTXID,
            postApplyChecksum: last.trailer.postApplyChecksum,
            pageSize: last.header.pageSize,
            commit: last.header.commit)
    }

    /// The full paths of the canonically named LTX files in `directory`,
    /// sorted by name, which is TXID order.
    public static func files(inDirectory directory: String) throws(LTXError) -> [String] {
        let names: [String]
        switch Syscall.listDirectory(directory) {
        case .success(let listed): names = listed.filter { (try? LTXFileName(parsing: $0)) != nil }
        case .failure(let error): throw .io(operation: "opendir", path: directory, errno: error.rawValue)
        }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return names.sorted().map { prefix + $0 }
    }

    /// Decodes `path` completely and checks its name against its header.
    static func verifyFile(_ path: String) throws(LTXError) -> Link {
        do throws(LTXError) {
            let source = try LTXFileSource(path: path)
            defer { source.close() }
            var decoder = LTXDecoder(source: source)
            let header = try decoder.decodeHeader()
            let trailer = try decoder.finish()
            let baseName = String(path.split(separator: "/").last ?? Substring(path))
            if let name = try? LTXFileName(parsing: baseName),
               name.minTXID != header.minTXID || name.maxTXID != header.maxTXID {
                throw LTXError.invalidFileName(
                    "name says TXIDs \(name.minTXID)-\(name.maxTXID) but the header says \(header.minTXID)-\(header.maxTXID)")
            }
            return Link(path: path, header: header, trailer: trailer)
        } catch {
            throw .inFile(path, error)
        }
    }

    /// Whether a file with `header` starts inside the range `previous`
    /// already covers and reaches past it (accepted with `allowOverlap`).
    static func overlaps(_ header: LTXHeader, previous: Link?) -> Bool {
        guard let previous else { return false }
        return header.minTXID <= previous.header.maxTXID && header.maxTXID > previous.header.maxTXID
    }

    /// Checks that a file with `header` may follow `previous` (or start the
    /// chain when `previous` is nil). Shared with `LTXRebuilder`, which
    /// checks before applying each file.
    func checkLink(previous: Link?, header: LTXHeader, path: String) throws(LTXError) {
        guard let previous else {
            if requireSnapshotStart && !header.isSnapshot {
                throw .brokenChain(file: path, reason:
                    "the chain must start with a snapshot (min TXID 0000000000000001), found min TXID \(header.minTXID)")
            }
            return
        }
        let expected = previous.header.maxTXID.next
        let overlaps = LTXChainVerifier.overlaps(header, previous: previous)
        if header.minTXID != expected && !(allowOverlap && overlaps) {
            if allowOverlap && header.minTXID < expected {
                throw .brokenChain(file: path, reason:
                    "overlap adds nothing: max TXID \(header.maxTXID) does not pass max TXID \(previous.header.maxTXID) of \(previous.path)")
            }
            let kind = header.minTXID > expected ? "gap" : "overlap"
            throw .brokenChain(file: path, reason:
                "\(kind): min TXID \(header.minTXID) does not follow max TXID \(previous.header.maxTXID) of \(previous.path)")
        }
        // The page size may change (VACUUM after PRAGMA page_size, or a
        // database deleted and created again): such a file must hold the
        // whole database, which LTXRebuilder checks as it applies it.
        if !overlaps && header.tracksChecksums && previous.header.tracksChecksums
            && header.preApplyChecksum != previous.trailer.postApplyChecksum {
            throw .brokenChain(file: path, reason:
                "pre-apply checksum \(header.preApplyChecksum) does not match post-apply checksum "
                + "\(previous.trailer.postApplyChecksum) of \(previous.path)")
        }
    }
}
