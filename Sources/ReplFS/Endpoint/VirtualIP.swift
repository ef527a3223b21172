import Foundation

/// `vip`: the address clients dial, held by the primary alone, as
/// keepalived holds a VRRP address.
///
/// The address is added and removed with iproute2's `ip addr` (Debian's
/// `iproute2`, on every server), and announced with gratuitous ARP or an
/// unsolicited neighbour advertisement sent here. Adding an address that is
/// there and removing one that is not both succeed: each call leaves the
/// interface as asked whatever it was before, so a restarted daemon can
/// always clear what a crashed one left.
public struct VirtualIP: Sendable {
    public let address: VirtualAddress
    public let interface: String

    /// How long `ip addr` may take.
    static let commandTimeout = Duration.seconds(5)

    public init(address: VirtualAddress, interface: String) {
        self.address = address
        self.interface = interface
    }

    /// The start-up check: the interface exists and `ip` can be found
    /// (exit 2 otherwise).
    public func check() throws(ConfigError) {
        guard Syscall.interfaceIndex(interface) != nil else {
            throw ConfigError(key: "vip.interface", "there is no network interface \"\(interface)\" on this machine")
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? Supervisor.defaultSearchPath
        guard (path + ":" + Supervisor.defaultSearchPath).split(separator: ":").contains(where: { FileManager.default.isExecutableFile(atPath: "\($0)/ip") }) else {
            throw ConfigError(key: "vip", "needs iproute2's ip command, which is not in PATH")
        }
    }

    /// Whether the address is on the interface now; nil if the kernel
    /// could not be asked (callers removing it then try anyway).
    public var isHeld: Bool? {
        guard case .success(let addresses) = Syscall.addresses(on: interface) else { return nil }
        return addresses.contains(address.bytes)
    }

    /// Puts the address on the interface (IPv6 without duplicate address
    /// detection, so it answers at once: the lease already says it is ours).
    public func add() throws(VirtualIPError) {
        if isHeld == true { return }
        var arguments = ["ip", "addr", "add", address.description, "dev", interface]
        if address.isIPv6 { arguments.append("nodad") }
        try run(arguments, what: "add")
    }

    /// Takes the address off the interface.
    public func remove() throws(VirtualIPError) {
        guard isHeld != false else { return }
        try run(["ip", "addr", "del", address.description, "dev", interface], what: "remove")
    }

    /// Sends one announcement (gratuitous ARP, or neighbour advertisement).
    public func announce() throws(VirtualIPError) {
        guard let index = Syscall.interfaceIndex(interface) else {
            throw VirtualIPError(address: address, interface: interface, "cannot announce: the interface is gone")
        }
        guard let hardware = Syscall.hardwareAddress(interface) else {
            throw VirtualIPError(address: address, interface: interface, "cannot announce: no hardware address for \(interface)")
        }
        let frame = NeighbourAnnouncement.frame(for: address.bytes, hardware: hardware)
        if case .failure(let error) = Syscall.sendLinkFrame(interface: index, protocol: frame.etherType, destination: frame.destination, frame.payload) {
            throw VirtualIPError(address: address, interface: interface, "cannot announce: \(error)")
        }
    }

    private func run(_ arguments: [String], what: String) throws(VirtualIPError) {
        let outcome = ShortCommand(arguments, timeout: Self.commandTimeout).run()
        // Raced with another change: what matters is the state it left.
        if outcome.succeeded || isHeld == (what == "add") { return }
        let detail = outcome.output.isEmpty ? outcome.summary : "\(outcome.summary): \(outcome.output)"
        throw VirtualIPError(address: address, interface: interface, "cannot \(what) it (\(arguments.joined(separator: " ")): \(detail))")
    }
}

/// A virtual IP that could not be added, removed or announced.
public struct VirtualIPError: Error, Sendable, CustomStringConvertible {
    public var address: VirtualAddress
    public var interface: String
    public var reason: String

    init(address: VirtualAddress, interface: String, _ reason: String) {
        self.address = address
        self.interface = interface
        self.reason = reason
    }

    public var description: String { "vip \(address) on \(interface): \(reason)" }
}
