import Logging

/// Encodes one transaction as an LTX record while its pages are read, and
/// puts it in the database's log when it is finished.
///
/// Small transactions stay in memory and go to the log's spool in one
/// append (the commit path writes, the materializer files them later). A
/// transaction past ``streamThreshold`` of encoded bytes (a snapshot of a
/// large database) is streamed to its own LTX file as it is encoded, so
/// memory stays bounded by the threshold whatever the database's size.
struct LTXRecordWriter: ~Copyable {
    /// Encoded bytes held in memory before the record goes to a file instead.
    static let streamThreshold = 1 << 20

    private var encoder: LTXEncoder
    private let log: LTXLog
    private let txid: TXID
    private var file: LTXLog.PendingFile?

    /// Why a record could not be written, with the context for the log line.
    enum Failure: Error {
        /// The encoder refused (a page of the wrong size, a page out of order).
        case encoding(LTXError)
        /// Writing the log failed.
        case io(Errno)
        /// A page of the transaction could not be read back (its reader says why).
        case unreadable(FileSystemError)

        /// What the capture reports: the commit is not logged.
        var fileSystemError: FileSystemError {
            switch self {
            case .encoding(let reason): return .notLogged("cannot encode the transaction: \(reason)")
            case .io(let errno): return .notLogged("cannot write the transaction to the log", cause: errno)
            case .unreadable(let error): return error
            }
        }
    }

    init(log: LTXLog, header: LTXHeader) throws(Failure) {
        do { encoder = try LTXEncoder(header: header) } catch { throw .encoding(error) }
        self.log = log
        self.txid = header.maxTXID
    }

    /// Appends one page; past the threshold, what is encoded goes to the file.
    mutating func append(_ pgno: PageNumber, page: UnsafeRawBufferPointer) throws(Failure) {
        do { try encoder.append(pgno, page: page) } catch { throw .encoding(error) }
        guard encoder.bufferedByteCount >= Self.streamThreshold else { return }
        if file == nil {
            switch log.begin(minTXID: txid, maxTXID: txid) {
            case .success(let started): file = started
            case .failure(let error): throw .io(error)
            }
        }
        if case .failure(let error) = file!.append(encoder.takeBytes()) { throw .io(error) }
    }

    /// Writes the trailer and records the transaction in the log (durably
    /// with `sync`); returns the record as replication carries it.
    consuming func finish(postApplyChecksum: Checksum, sync: Bool, expectSync: Bool) throws(Failure) -> LTXContent {
        do {
            try encoder.finish(postApplyChecksum: postApplyChecksum)
        } catch {
            file?.abandon()
            throw .encoding(error)
        }
        guard let file else {
            let bytes = encoder.takeBytes()
            if case .failure(let error) = log.append(bytes, txid: txid, sync: sync, expectSync: expectSync) { throw .io(error) }
            return .bytes(bytes)
        }
        if case .failure(let error) = file.append(encoder.takeBytes()) {
            file.abandon()
            throw .io(error)
        }
        if case .failure(let error) = file.commit(sync: sync) { throw .io(error) }
        return .file(log.path(minTXID: txid, maxTXID: txid))
    }

    /// Drops the record: nothing of it stays in the log.
    consuming func abandon() {
        file?.abandon()
    }
}
