import ArgumentParser
import ReplFS

/// `replfsd vip-watchdog` (internal): the network fence beside the daemon,
/// see ``VirtualIPWatchdog``.
struct VIPWatchdogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vip-watchdog", abstract: "Remove the virtual IP when the lease deadline passes (started by replfsd mount).",
        shouldDisplay: false)

    @Option(help: "The lease deadline file (DATA/lease-deadline).") var deadlineFile: String
    @Option(help: "The virtual IP, ADDRESS/PREFIX.") var address: String
    @Option(help: "Its network interface.") var interface: String
    @Option(help: "The daemon's pid.") var daemon: Int32

    func run() throws {
        guard let address = VirtualAddress(cidr: address) else { throw ValidationError("\(self.address) is not ADDRESS/PREFIX") }
        let watchdog = VirtualIPWatchdog(vip: VirtualIP(address: address, interface: interface), deadlineFile: deadlineFile, daemon: daemon)
        throw ExitCode(watchdog.run())
    }
}
