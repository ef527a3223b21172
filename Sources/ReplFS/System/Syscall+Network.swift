#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation

/// Network interfaces and addresses: what the virtual IP needs to find its
/// interface, see whether it holds an address, and announce it.
extension Syscall {
    /// `if_nametoindex(3)`: the index of interface `name`, or nil if there
    /// is no such interface.
    static func interfaceIndex(_ name: String) -> Int32? {
        let index = Glibc.if_nametoindex(name)
        return index == 0 ? nil : Int32(index)
    }

    /// The interface's hardware (MAC) address: its `AF_PACKET` entry in
    /// `getifaddrs(3)`, which asks the kernel over netlink in this
    /// process's network namespace (`/sys/class/net` shows the namespace
    /// sysfs was mounted in, which under `nsenter --net` is another one).
    static func hardwareAddress(_ interface: String) -> [UInt8]? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard Glibc.getifaddrs(&list) == 0 else { return nil }
        defer { Glibc.freeifaddrs(list) }
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let address = current.pointee.ifa_addr, Int32(address.pointee.sa_family) == AF_PACKET,
                String(cString: current.pointee.ifa_name) == interface
            else { continue }
            // struct sockaddr_ll (linux/if_packet.h, which Swift does not
            // import): sll_halen at byte 11, sll_addr from byte 12.
            let raw = UnsafeRawPointer(address)
            let length = Int(raw.load(fromByteOffset: 11, as: UInt8.self))
            guard length == 6 else { return nil }
            return (0..<6).map { raw.load(fromByteOffset: 12 + $0, as: UInt8.self) }
        }
        return nil
    }

    /// `inet_pton(3)` for AF_INET (4 bytes) or AF_INET6 (16 bytes); nil if
    /// `text` is neither.
    static func parseIPAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if Glibc.inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if Glibc.inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// `getifaddrs(3)`: the addresses (4 or 16 bytes) configured on
    /// interface `name`.
    static func addresses(on name: String) -> Result<[[UInt8]], Errno> {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard Glibc.getifaddrs(&list) == 0 else { return .failure(.current) }
        defer { Glibc.freeifaddrs(list) }
        var found: [[UInt8]] = []
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let address = current.pointee.ifa_addr, String(cString: current.pointee.ifa_name) == name else { continue }
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    var value = pointer.pointee.sin_addr
                    found.append(withUnsafeBytes(of: &value) { Array($0) })
                }
            case AF_INET6:
                address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    var value = pointer.pointee.sin6_addr
                    found.append(withUnsafeBytes(of: &value) { Array($0) })
                }
            default:
                break
            }
        }
        return .success(found)
    }

    /// `clinux_send_link_frame`: one frame (without its Ethernet header) to
    /// `destination` out of interface `index`, as EtherType `protocol`.
    static func sendLinkFrame(interface index: Int32, protocol: UInt16, destination: [UInt8], _ frame: [UInt8]) -> Result<Void, Errno> {
        precondition(destination.count == 6, "an Ethernet address has 6 bytes")
        let result = destination.withUnsafeBufferPointer { destination in
            frame.withUnsafeBytes { clinux_send_link_frame(index, `protocol`, destination.baseAddress, $0.baseAddress, $0.count) }
        }
        return result == 0 ? .success(()) : .failure(.current)
    }
}
