#if canImport(Glibc)
import Glibc
#endif

/// Checking and recording a replicated batch before anything is written:
/// each file decoded in full against the position its predecessors reach,
/// and the accepted files recorded in this node's log, durably.
extension Database {
    struct Verified {
        var header: LTXHeader
        var transaction: Prepared
        /// The pages, when the file is in memory.
        var pages: [(PageNumber, [UInt8])]
    }

    /// Decodes and checks one file against the current position.
    func verify(_ source: LTXContent, keepAside: Bool, view: BatchView, state: inout State) -> Result<Verified, ApplyRefusal> {
        do throws(LTXError) {
            var decoder = try source.decoder()
            defer { decoder.source.closeIfFile() }
            let header = try decoder.decodeHeader()
            let pageSize = Int(header.pageSize)
            let wholeImage = header.isSnapshot || (header.commit > 0 && pageSize != view.pageSize) || !view.complete
            if header.isSnapshot {
                // A snapshot never takes a database back in time, unless the
                // primary found its history diverged (then a copy is kept).
                guard keepAside || header.maxTXID >= view.position.txid else {
                    return .failure(.notNext(database: path, position: view.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                }
            } else {
                guard header.minTXID.rawValue == view.position.txid.rawValue + 1, !header.tracksChecksums || header.preApplyChecksum == view.position.checksum else {
                    return .failure(.notNext(database: path, position: view.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                }
            }
            var checksum = wholeImage ? Checksum.emptyDatabase : view.position.checksum
            if !wholeImage && header.commit < view.pageCount {
                for pgno in ((header.commit + 1)...view.pageCount).lazy.map(PageNumber.init(rawValue:)) {
                    checksum = checksum.replacingPage(old: view.checksum(pgno, base: state.pages.pageChecksums), new: .zero)
                }
            }
            var updates: [(PageNumber, Checksum)] = []
            var pages: [(PageNumber, [UInt8])] = []
            var isWAL: Bool?
            let keep: Bool
            if case .bytes = source { keep = true } else { keep = false }
            var page = [UInt8](repeating: 0, count: pageSize)
            while let pgno = try decoder.nextPage(into: &page) {
                let new = page.withUnsafeBytes { Checksum.page(pgno, $0) }
                let old: Checksum = (!wholeImage && pgno.rawValue <= view.pageCount) ? view.checksum(pgno, base: state.pages.pageChecksums) : .zero
                checksum = checksum.replacingPage(old: old, new: new)
                updates.append((pgno, new))
                if pgno.rawValue == 1, let databaseHeader = page.withUnsafeBytes({ DatabaseHeader($0) }) { isWAL = databaseHeader.isWAL }
                if keep { pages.append((pgno, page)) }
            }
            let trailer = try decoder.finish()
            if header.tracksChecksums && trailer.postApplyChecksum != checksum {
                return .failure(.postApplyMismatch(database: path, expected: trailer.postApplyChecksum, computed: checksum))
            }
            let transaction = Prepared(
                txid: header.maxTXID, checksum: checksum, pageSize: pageSize, commitSize: header.commit, allPages: wholeImage,
                updates: updates, isWAL: isWAL, epoch: (state.primaryEpochs ?? state.epochs).epoch(at: header.maxTXID) ?? .unknown)
            return .success(Verified(header: header, transaction: transaction, pages: pages))
        } catch {
            return .failure(.corrupt(database: path, error))
        }
    }

    /// Records a batch of in-memory files as one LTX file covering them all
    /// (the last version of each page, the first file's pre-apply checksum,
    /// the position reached after the last), on stable storage on return.
    func recordMerged(
        first: LTXHeader, preApply: Checksum, last: LTXHeader, whole: Bool, pages: [PageNumber: [UInt8]], postApply: Checksum, in state: inout State
    ) -> Result<[UInt8], Errno> {
        let log: LTXLog
        switch ensureLog(&state) {
        case .success(let value): log = value
        case .failure(let error): return .failure(error)
        }
        let minTXID = whole ? TXID(1) : first.minTXID
        if whole, case .failure(let error) = log.removeAll(resettingTo: last.maxTXID) { return .failure(error) }
        let header = LTXHeader(
            flags: last.flags, pageSize: last.pageSize, commit: last.commit, minTXID: minTXID, maxTXID: last.maxTXID, timestamp: last.timestamp,
            preApplyChecksum: whole ? .zero : (first.isSnapshot ? .zero : first.preApplyChecksum), nodeID: last.nodeID)
        do {
            var encoder = try LTXEncoder(header: header)
            let lockPage = PageNumber.lockPage(pageSize: Int(last.pageSize))
            for pgno in pages.keys.sorted() where pgno.rawValue <= last.commit && pgno != lockPage {
                try pages[pgno]!.withUnsafeBytes { try encoder.append(pgno, page: $0) }
            }
            try encoder.finish(postApplyChecksum: postApply)
            let bytes = encoder.takeBytes()
            // Durable before the position moves: what this replica
            // acknowledges survives its crash.
            return log.append(bytes, minTXID: minTXID, txid: last.maxTXID, sync: true).map { bytes }
        } catch {
            return .failure(.io)
        }
    }

    /// Appends the file to this node's log; a snapshot starts the log anew.
    func record(_ source: LTXContent, header: LTXHeader, in state: inout State) -> Result<Void, Errno> {
        let log: LTXLog
        switch ensureLog(&state) {
        case .success(let value): log = value
        case .failure(let error): return .failure(error)
        }
        if header.isSnapshot, case .failure(let error) = log.removeAll(resettingTo: header.maxTXID) { return .failure(error) }
        switch source {
        case .bytes(let bytes):
            return log.append(bytes, minTXID: header.minTXID, txid: header.maxTXID, sync: false)
        case .file(let path):
            return log.adoptFile(at: path, minTXID: header.minTXID, maxTXID: header.maxTXID)
        }
    }
}
