/// The frames that tell a LAN an address has moved to this machine, so
/// clients stop sending to the old primary's hardware address at once
/// instead of after their neighbour cache times out (what keepalived sends
/// after a VRRP transition).
///
/// - IPv4: a gratuitous ARP request (RFC 5227 "ARP announcement": sender and
///   target protocol address both the address), broadcast. Linux accepts it
///   as an update of an entry it already has even with `arp_accept` off.
/// - IPv6: an unsolicited neighbour advertisement (RFC 4861 7.2.6) to all
///   nodes, with the override flag and the target link-layer address.
///
/// Each is the frame's payload: the kernel adds the Ethernet header
/// (``Syscall/sendLinkFrame(interface:protocol:destination:_:)``).
enum NeighbourAnnouncement {
    static let etherTypeARP: UInt16 = 0x0806
    static let etherTypeIPv6: UInt16 = 0x86DD
    static let broadcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    /// The Ethernet multicast address of ff02::1 (all nodes).
    static let allNodes: [UInt8] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01]
    static let allNodesAddress: [UInt8] = [0xff, 0x02] + [UInt8](repeating: 0, count: 13) + [0x01]

    /// (EtherType, destination, payload) announcing `address` at `hardware`.
    static func frame(for address: [UInt8], hardware: [UInt8]) -> (etherType: UInt16, destination: [UInt8], payload: [UInt8]) {
        address.count == 4
            ? (etherTypeARP, broadcast, gratuitousARP(address: address, hardware: hardware))
            : (etherTypeIPv6, allNodes, unsolicitedAdvertisement(address: address, hardware: hardware))
    }

    /// ARP over Ethernet for IPv4, operation 1 (request), sender and target
    /// protocol address both `address`, target hardware address zero.
    static func gratuitousARP(address: [UInt8], hardware: [UInt8]) -> [UInt8] {
        precondition(address.count == 4 && hardware.count == 6)
        return [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01] + hardware + address + [UInt8](repeating: 0, count: 6) + address
    }

    /// An IPv6 packet (hop limit 255, from `address` to ff02::1) carrying an
    /// ICMPv6 neighbour advertisement for `address` with the override flag
    /// and a target link-layer address option.
    static func unsolicitedAdvertisement(address: [UInt8], hardware: [UInt8]) -> [UInt8] {
        precondition(address.count == 16 && hardware.count == 6)
        var icmp: [UInt8] = [136, 0, 0, 0, 0x20, 0, 0, 0] + address + [2, 1] + hardware
        let checksum = icmpv6Checksum(source: address, destination: allNodesAddress, message: icmp)
        icmp[2] = UInt8(checksum >> 8)
        icmp[3] = UInt8(checksum & 0xff)
        let length = UInt16(icmp.count)
        let header: [UInt8] = [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xff), 58, 255]
        return header + address + allNodesAddress + icmp
    }

    /// The ICMPv6 checksum (RFC 4443 2.3): the ones' complement sum over the
    /// pseudo-header (source, destination, length, next header 58) and the
    /// message with its checksum field zero.
    static func icmpv6Checksum(source: [UInt8], destination: [UInt8], message: [UInt8]) -> UInt16 {
        let length = UInt32(message.count)
        let pseudo = source + destination
            + [UInt8(length >> 24), UInt8((length >> 16) & 0xff), UInt8((length >> 8) & 0xff), UInt8(length & 0xff), 0, 0, 0, 58]
        var sum: UInt32 = 0
        let bytes = pseudo + message + (message.count % 2 == 1 ? [0] : [])
        for index in stride(from: 0, to: bytes.count, by: 2) {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
        }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
