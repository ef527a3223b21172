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
        let found = try? addresses(on: interface, family: AF_PACKET) { raw in
            // struct sockaddr_ll (linux/if_packet.h, which Swift does not
            // import): sll_halen at byte 11, sll_addr from byte 12.
            let length = Int(raw.load(fromByteOffset: 11, as: UInt8.self))
            return (0..<min(length, 8)).map { raw.load(fromByteOffset: 12 + $0, as: UInt8.self) }
        }.get()
        return found?.first { $0.count == 6 }
    }

    /// `getifaddrs(3)`: the addresses (4 or 16 bytes) configured on
    /// interface `name`.
    static func addresses(on name: String) -> Result<[[UInt8]], Errno> {
        let v4 = addresses(on: name, family: AF_INET) { raw in
            var value = raw.load(as: sockaddr_in.self).sin_addr
            return withUnsafeBytes(of: &value) { Array($0) }
        }
        let v6 = addresses(on: name, family: AF_INET6) { raw in
            var value = raw.load(as: sockaddr_in6.self).sin6_addr
            return withUnsafeBytes(of: &value) { Array($0) }
        }
        return v4.flatMap { v4 in v6.map { v4 + $0 } }
    }

    /// Walks `getifaddrs(3)` (netlink, this process's namespace): `read`
    /// of each address of `family` on interface `name`.
    private static func addresses(on name: String, family: Int32, _ read: (UnsafeRawPointer) -> [UInt8]) -> Result<[[UInt8]], Errno> {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard Glibc.getifaddrs(&list) == 0 else { return .failure(.current) }
        defer { Glibc.freeifaddrs(list) }
        var found: [[UInt8]] = []
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let address = current.pointee.ifa_addr, Int32(address.pointee.sa_family) == family,
                String(cString: current.pointee.ifa_name) == name
            else { continue }
            found.append(read(UnsafeRawPointer(address)))
        }
        return .success(found)
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
