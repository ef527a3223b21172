#!/usr/bin/env python3
"""Independent reference checker for LTX files (superfly/ltx format version 3).

Written from the upstream README, not from the Swift implementation, so the
two can check each other. Deliberately simple and slow: pure-Python CRC.

Usage:
  ltx_reference.py verify FILE...           print "ok", or "FILE: reason" and exit 1
  ltx_reference.py checksum DB PAGE_SIZE    print the database checksum (16 hex digits)
  ltx_reference.py apply DB FILE...         apply files to DB like `ltx apply`

Requires the `lz4` module (pip install lz4).
"""
import struct
import sys

import lz4.block

FLAG = 1 << 63
HEADER = struct.Struct(">4sIIIQQqQqqIIQ20s")  # 100 bytes
assert HEADER.size == 100


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xD800000000000000 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = _crc_table()


def crc64(data, crc=0):
    """CRC-64/ISO; pass the previous result as `crc` to continue a stream."""
    crc ^= 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def page_checksum(pgno, data):
    return FLAG | crc64(struct.pack(">I", pgno) + data)


def lock_page(page_size):
    return 0x40000000 // page_size + 1


class Invalid(Exception):
    pass


def uvarint(buf, pos):
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise Invalid("truncated varint in page index")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise Invalid("varint overflow in page index")


def parse(data):
    """Decodes and verifies one LTX file; returns (header dict, pages, post-apply checksum)."""
    if len(data) < 100:
        raise Invalid("truncated header")
    (magic, flags, page_size, commit, min_txid, max_txid, _ts, pre, wal_off, wal_size,
     salt1, salt2, _node, _reserved) = HEADER.unpack_from(data)
    no_checksum = bool(flags & 2)
    if magic != b"LTX1":
        raise Invalid("bad magic")
    if flags & ~2:
        raise Invalid("invalid flags 0x%x" % flags)
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise Invalid("invalid page size %d" % page_size)
    if min_txid == 0 or max_txid == 0 or min_txid > max_txid:
        raise Invalid("bad TXID range %d-%d" % (min_txid, max_txid))
    if wal_off < 0 or wal_size < 0 or ((salt1 or salt2 or wal_size) and wal_off == 0):
        raise Invalid("inconsistent WAL fields")
    snapshot = min_txid == 1
    if snapshot or no_checksum:
        if pre != 0:
            raise Invalid("pre-apply checksum must be zero")
    elif not pre & FLAG:
        raise Invalid("pre-apply checksum missing or unflagged")

    crc = crc64(data[:100])
    pos, pages, frames, last = 100, [], [], 0
    while True:
        if pos + 6 > len(data):
            raise Invalid("truncated page header at %d" % pos)
        pgno, pflags = struct.unpack_from(">IH", data, pos)
        crc = crc64(data[pos:pos + 6], crc)
        if pgno == 0 and pflags == 0:
            pos += 6
            break
        if pflags != 1:
            raise Invalid("page %d: unsupported page flags 0x%x" % (pgno, pflags))
        if pgno <= last or pgno > commit or pgno == lock_page(page_size):
            raise Invalid("page %d out of order, beyond commit, or lock page" % pgno)
        if snapshot and pgno != last + 1 + (last + 1 == lock_page(page_size)):
            raise Invalid("snapshot missing pages before %d" % pgno)
        if pos + 10 > len(data):
            raise Invalid("truncated size prefix of page %d" % pgno)
        (size,) = struct.unpack_from(">I", data, pos + 6)
        crc = crc64(data[pos + 6:pos + 10], crc)
        if pos + 10 + size > len(data):
            raise Invalid("truncated payload of page %d" % pgno)
        try:
            page = lz4.block.decompress(data[pos + 10:pos + 10 + size], uncompressed_size=page_size)
        except Exception as e:
            raise Invalid("page %d: lz4: %s" % (pgno, e))
        if len(page) != page_size:
            raise Invalid("page %d decompresses to %d bytes" % (pgno, len(page)))
        crc = crc64(page, crc)
        frames.append((pgno, pos, 10 + size))
        pages.append((pgno, page))
        pos += 10 + size
        last = pgno
    if snapshot and last != (commit - 1 if commit == lock_page(page_size) else commit):
        raise Invalid("snapshot incomplete: last page %d, commit %d" % (last, commit))

    index_start, entries = pos, []
    while True:
        pgno, pos = uvarint(data, pos)
        if pgno == 0:
            break
        offset, pos = uvarint(data, pos)
        size, pos = uvarint(data, pos)
        entries.append((pgno, offset, size))
    if entries != frames:
        raise Invalid("page index does not match page frames")
    if pos + 8 + 16 > len(data):
        raise Invalid("truncated index size or trailer")
    if struct.unpack_from(">Q", data, pos)[0] != pos - index_start:
        raise Invalid("page index size field mismatch")
    post, file_checksum = struct.unpack_from(">QQ", data, pos + 8)
    crc = crc64(data[index_start:pos + 16], crc)
    if pos + 24 != len(data):
        raise Invalid("trailing bytes after trailer")
    if FLAG | crc != file_checksum:
        raise Invalid("file checksum mismatch: stored %016x computed %016x" % (file_checksum, FLAG | crc))
    if no_checksum:
        if post != 0:
            raise Invalid("post-apply checksum must be zero")
    elif not post & FLAG or (commit == 0 and post != FLAG):
        raise Invalid("bad post-apply checksum %016x" % post)
    if snapshot and not no_checksum:
        computed = FLAG
        for pgno, page in pages:
            computed ^= page_checksum(pgno, page)
        if FLAG | computed != post:
            raise Invalid("snapshot post-apply checksum mismatch")
    header = dict(page_size=page_size, commit=commit, min_txid=min_txid, max_txid=max_txid,
                  pre=pre, no_checksum=no_checksum, snapshot=snapshot)
    return header, pages, post


def db_checksum(path, page_size):
    """Checksum of a database file. An empty database is FLAG (as LTX files record it)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % page_size:
        raise Invalid("database size %d is not a multiple of %d" % (len(data), page_size))
    result = FLAG
    for i in range(len(data) // page_size):
        if i + 1 != lock_page(page_size):
            result ^= page_checksum(i + 1, data[i * page_size:(i + 1) * page_size])
    return FLAG | result


def main(argv):
    if len(argv) >= 2 and argv[0] == "verify":
        failed = False
        for name in argv[1:]:
            try:
                with open(name, "rb") as f:
                    parse(f.read())
            except (Invalid, OSError) as e:
                print("%s: %s" % (name, e))
                failed = True
        if not failed:
            print("ok")
        return 1 if failed else 0
    if len(argv) == 3 and argv[0] == "checksum":
        print("%016x" % db_checksum(argv[1], int(argv[2])))
        return 0
    if len(argv) >= 3 and argv[0] == "apply":
        db = argv[1]
        open(db, "ab").close()
        for name in argv[2:]:
            try:
                with open(name, "rb") as f:
                    header, pages, post = parse(f.read())
                size = header["page_size"]
                if not header["snapshot"] and not header["no_checksum"] and db_checksum(db, size) != header["pre"]:
                    raise Invalid("pre-apply checksum mismatch")
                with open(db, "r+b") as f:
                    for pgno, page in pages:
                        f.seek((pgno - 1) * size)
                        f.write(page)
                    f.truncate(header["commit"] * size)
                if not header["no_checksum"] and db_checksum(db, size) != post:
                    raise Invalid("post-apply checksum mismatch")
            except (Invalid, OSError) as e:
                print("%s: %s" % (name, e))
                return 1
        print("ok")
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
