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
