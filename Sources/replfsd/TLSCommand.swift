import ArgumentParser
import ReplFS

/// `replfsd tls ...`: a small CA for a cluster, for operators who have none.
struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls",
        abstract: "Make a cluster CA and node certificates for replication.tls.",
        discussion: """
            An existing PKI (cfssl, step-ca, Vault) works as well: replication.tls needs \
            PEM files, a node certificate usable for both server and client \
            authentication whose subject alternative names hold the addresses peers \
            dial, its key, and the CA bundle.
            """,
        subcommands: [TLSInitCommand.self, TLSIssueCommand.self])
}

/// `replfsd tls init DIR`: a new cluster CA.
struct TLSInitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make a cluster CA: DIR/ca.crt (give it to every node) and DIR/ca.key (mode 0600; keep it off the nodes).")

    @Argument(help: "The directory to write into (created if missing).")
    var directory: String

    @Option(help: "How long the CA is valid, in days.")
    var days = 3650

    func run() throws {
        do {
            let ca = try ClusterCA.create(in: AdminClient.absolutePath(directory), days: days)
            print("wrote \(ca.certificatePath) and \(ca.keyPath)")
        } catch {
            printError("replfsd tls init: \(error)")
            throw ExitCode(2)
        }
    }
}

/// `replfsd tls issue DIR NODE --ip A --dns N`: a node certificate.
struct TLSIssueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Sign a certificate for one node with the CA in DIR: DIR/NODE.crt and DIR/NODE.key (mode 0600).")

    @Argument(help: "The directory holding the CA (from replfsd tls init).")
    var directory: String

    @Argument(help: "The node's name (its certificate's common name).")
    var node: String

    @Option(name: .customLong("ip"), help: "An IP address peers dial this node at (repeat for several).")
    var ipAddresses: [String] = []

    @Option(name: .customLong("dns"), help: "A DNS name peers dial this node at, or the cluster's replication.tls.server-name (repeat for several).")
    var dnsNames: [String] = []

    @Option(help: "How long the certificate is valid, in days.")
    var days = 825

    @Flag(help: "Replace an earlier key and certificate of this node (rotation).")
    var force = false

    func run() throws {
        do {
            let paths = try ClusterCA(directory: AdminClient.absolutePath(directory)).issue(
                node: node, ipAddresses: ipAddresses, dnsNames: dnsNames, days: days, replace: force)
            print("wrote \(paths.certificate) and \(paths.key)")
        } catch {
            printError("replfsd tls issue: \(error)")
            throw ExitCode(2)
        }
    }
}
