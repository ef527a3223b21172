/// `vip.address`: the address clients dial, in CIDR form (`10.0.0.100/24`,
/// `fd00::100/64`). The prefix matters: `ip addr add` with the subnet's
/// prefix makes the address reachable on the LAN as the node's own are.
public struct VirtualAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address as written (without the prefix).
    public let address: String
    /// Its 4 (IPv4) or 16 (IPv6) bytes, network order.
    public let bytes: [UInt8]
    /// The prefix length.
    public let prefix: Int

    public var isIPv6: Bool { bytes.count == 16 }

    /// Parses `ADDRESS/PREFIX`; nil if it is not in that form.
    public init?(cidr text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]), let bytes = Syscall.parseIPAddress(String(parts[0])) else { return nil }
        guard (bytes.count == 4 && (1...32).contains(prefix)) || (bytes.count == 16 && (1...128).contains(prefix)) else { return nil }
        // A unicast address a client can dial: not unspecified, loopback or multicast.
        let isV4 = bytes.count == 4
        if bytes.allSatisfy({ $0 == 0 }) || (isV4 && (bytes[0] == 127 || bytes[0] >= 224)) || (!isV4 && bytes[0] == 0xff)
            || (!isV4 && bytes == [UInt8](repeating: 0, count: 15) + [1])
        {
            return nil
        }
        self.address = String(parts[0])
        self.bytes = bytes
        self.prefix = prefix
    }

    public var description: String { "\(address)/\(prefix)" }
}
