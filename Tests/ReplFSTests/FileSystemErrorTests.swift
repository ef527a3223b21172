import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The typed error of the mount's file operations, and the errno the
/// application gets for it: made in one place (`FileSystemError.errno`),
/// the same as the kernel returned before the type existed.
@Suite("FileSystemError: codes and the errno the application gets")
struct FileSystemErrorTests {
    @Test(
        "each code becomes its errno",
        arguments: [
            (FileSystemError.Code.readOnly, Errno.readOnlyFileSystem),
            (.noSuchNode, .noEntry),
            (.stale, .stale),
            (.badHandle, .badFileDescriptor),
            (.invalid, .invalid),
            (.notLogged, .io),
            (.system, .io),
        ])
    func codeToErrno(code: FileSystemError.Code, errno: Errno) {
        #expect(FileSystemError(code, "test").errno == errno)
    }

    @Test("a system call's errno reaches the application unchanged", arguments: [ENOENT, EEXIST, ENOSPC, EACCES, EDQUOT, EIO, ENOTEMPTY])
    func systemErrnoUnchanged(raw: Int32) {
        let cause = Errno(rawValue: raw)
        let error = FileSystemError.system(cause)
        #expect(error.code == .system && error.cause == cause)
        #expect(error.errno == cause)
    }

    @Test("a commit not logged for want of space is a full disk to the application; any other cause is EIO")
    func notLoggedKeepsFullDisk() {
        #expect(FileSystemError.notLogged("cannot write the transaction to the log", cause: .noSpace).errno == .noSpace)
        #expect(FileSystemError.notLogged("cannot write the transaction to the log", cause: .quotaExceeded).errno == .quotaExceeded)
        #expect(FileSystemError.notLogged("cannot read page 3 of the WAL back", cause: .io).errno == .io)
        #expect(FileSystemError.notLogged("cannot open the database's log", cause: Errno(rawValue: EMFILE)).errno == .io)
        #expect(FileSystemError.notLogged("cannot encode the transaction").errno == .io)
    }

    @Test("the description gives the code, the message and the cause")
    func description() {
        let error = FileSystemError.notLogged("cannot flush the log", cause: .noSpace)
        #expect(error.description == "not-logged: cannot flush the log (\(Errno.noSpace))")
        #expect(FileSystemError(.readOnly, "app.db: this node does not take writes now").description == "read-only: app.db: this node does not take writes now")
    }
}

extension FileSystemErrorTests {
    /// The application's thread, as FUSE would report it.
    static let application = Store.Caller(pid: getpid())

    @Test("a write on a store whose writes are stopped is refused as read-only (EROFS) and changes nothing")
    func stoppedWritesRefused() throws {
        let scratch = try ScratchStore()
        let store = scratch.store
        let (file, _) = try store.create("notes.txt", flags: O_RDWR, mode: 0o644, caller: Self.application).get()
        let hello = Array("hello".utf8)
        #expect(try hello.withUnsafeBytes { try store.write(file, $0, at: 0).get() } == hello.count)

        store.stopWrites()
        let refused = Array("HELLO".utf8).withUnsafeBytes { store.write(file, $0, at: 0) }
        guard case .failure(let error) = refused else { Issue.record("the write was let through: \(refused)"); return }
        #expect(error.code == .readOnly)
        #expect(error.errno == .readOnlyFileSystem)
        #expect(store.unlink("notes.txt", caller: Self.application).failure?.code == .readOnly)
        #expect(store.mkdir("dir", mode: 0o755, caller: Self.application).failure?.errno == .readOnlyFileSystem)
        #expect(try scratch.fileBytes("notes.txt") == hello, "nothing reached the file")
        #expect(throws: Never.self, "reading stays allowed") { try store.open("notes.txt", flags: O_RDONLY, caller: Self.application).get() }
    }

    @Test("a failing system call on the real file carries its errno (ENOENT, EEXIST)")
    func systemCallFailure() throws {
        let scratch = try ScratchStore()
        let store = scratch.store
        let missing = store.open("missing.txt", flags: O_RDONLY, caller: Self.application).failure
        #expect(missing?.code == .system && missing?.cause == .noEntry && missing?.errno == .noEntry)
        _ = try store.mkdir("dir", mode: 0o755, caller: Self.application).get()
        #expect(store.mkdir("dir", mode: 0o755, caller: Self.application).failure?.errno == .exists)
    }

    @Test("the file system answers an unknown inode with ENOENT, a missing name with a negative entry, a replaced file with ESTALE")
    func fileSystemNodes() throws {
        let scratch = try ScratchStore()
        let fs = try FileSystem(store: scratch.store)
        #expect(fs.attributes(999, file: nil).failure?.code == .noSuchNode)
        #expect(fs.attributes(999, file: nil).failure?.errno == .noEntry)
        #expect(try fs.lookup(parent: 1, name: "absent").get().id == 0, "a missing name is a cached negative entry, not an error")

        let path = scratch.files + "/plain.txt"
        #expect(FileManager.default.createFile(atPath: path, contents: Data("old".utf8)))
        let node = try fs.lookup(parent: 1, name: "plain.txt").get()
        // Replaced underneath, as a replica's apply does.
        #expect(FileManager.default.createFile(atPath: path + ".new", contents: Data("new".utf8)))
        #expect(rename(path + ".new", path) == 0)
        let stale = fs.open(node.id, flags: O_RDONLY, caller: Self.application).failure
        #expect(stale?.code == .stale && stale?.errno == .stale)
    }
}
