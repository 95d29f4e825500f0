"""The NEFF payload container: a bounded reader and a deterministic writer of uncompressed POSIX ustar.

Compression is left out on purpose: a plain tar is read straight from memory with known sizes, so there is no
decompression bomb to bound (neuron-packager's ``optimize`` also writes uncompressed NEFFs). pax and GNU
extension records are refused (member paths are short: at most 100 bytes plus the ustar prefix), and this small
in-memory reader replaces :mod:`tarfile`, whose pax parsing is quadratic in CPython < 3.11.10 (CVE-2024-6232).
Bytes after the end-of-archive block are ignored, as tar does.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping

from nrt_lab.neff._common import check_member_path, invalid

__all__ = ["DEFAULT_MAX_MEMBERS", "build_payload", "read_members"]

DEFAULT_MAX_MEMBERS = 4096
"""Default cap on the number of tar members."""

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_FILE_TYPES = (b"0", b"\x00")
_LINK_TYPES = (b"1", b"2")
_EXTENDED_TYPES = (b"x", b"g", b"L", b"K")


def _octal(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:
        raise invalid(f"NEFF payload {what} uses base-256 numbers, which nrt_lab does not accept")
    digits = field.replace(b"\x00", b" ").strip(b" ")
    if not digits:
        return 0
    if not all(0x30 <= c <= 0x37 for c in digits):
        raise invalid(f"NEFF payload {what} is not an octal number")
    return int(digits, 8)


def read_members(
    payload: memoryview, max_size: int, max_members: int
) -> tuple[dict[str, memoryview], set[str]]:
    """Regular files (path -> bytes) and directory entries of a ustar payload, after every safety check.

    A small reader of our own rather than :mod:`tarfile`: it works on the bytes in memory with every size
    checked before use, accepts only plain ustar headers (no pax/GNU extension records, whose parsing in
    CPython < 3.11.10/3.12.6 is quadratic, CVE-2024-6232), and stops at nothing silently.
    """
    if bytes(payload[:2]) == b"\x1f\x8b":
        raise invalid("NEFF payload is gzip-compressed; nrt_lab reads uncompressed tar payloads only")
    files: dict[str, memoryview] = {}
    dirs: set[str] = set()
    total = 0
    count = 0
    offset = 0
    while True:
        block = bytes(payload[offset : offset + _BLOCK])
        if len(block) < _BLOCK:
            where = "no tar header" if offset == 0 else "no end-of-archive marker"
            raise invalid(f"NEFF payload is not a valid tar archive: truncated at byte {offset} ({where})")
        if block == _ZERO_BLOCK:
            if offset == 0:
                raise invalid("NEFF payload is an empty tar archive (no sg00/def.json)")
            break
        count += 1
        if count > max_members:
            raise invalid(f"NEFF payload has more than {max_members} tar members")
        if block[257:263] not in (b"ustar\x00", b"ustar "):
            raise invalid(f"NEFF payload is not a valid tar archive: no ustar header at byte {offset}")
        checksum = _octal(block[148:156], f"tar header checksum at byte {offset}")
        unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
        signed = unsigned - 256 * sum(1 for c in block[:148] + block[156:] if c & 0x80)  # signed-char sums
        if checksum not in (unsigned, signed):
            raise invalid(f"NEFF payload is not a valid tar archive: bad header checksum at byte {offset}")
        typeflag = block[156:157]
        if typeflag in _EXTENDED_TYPES:
            raise invalid(
                f"NEFF payload has a pax/GNU extended header (type {typeflag.decode()!r}) at byte {offset}; "
                "only plain ustar members are accepted"
            )
        name_raw = block[0:100].split(b"\x00", 1)[0]
        prefix = block[345:500].split(b"\x00", 1)[0] if block[257:263] == b"ustar\x00" else b""
        try:
            name = ((prefix + b"/" if prefix else b"") + name_raw).decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(f"NEFF payload has a member name that is not UTF-8 at byte {offset}") from None
        is_dir = typeflag == b"5"
        stripped = name[:-1] if is_dir and name.endswith("/") else name
        check_member_path(stripped)
        if stripped in files or stripped in dirs:
            raise invalid(f"NEFF payload has a duplicate member {stripped!r}")
        if typeflag in _LINK_TYPES:
            raise invalid(f"NEFF payload member {stripped!r} is a link, links are not allowed")
        if not is_dir and typeflag not in _FILE_TYPES:
            raise invalid(f"NEFF payload member {stripped!r} is not a regular file (tar type {typeflag!r})")
        size = _octal(block[124:136], f"size of member {stripped!r}")
        if size > max_size:
            raise invalid(
                f"NEFF payload member {stripped!r} is too large: {size} bytes, limit {max_size} bytes"
            )
        total += size
        if total > max_size:
            raise invalid(f"NEFF payload members total more than the {max_size}-byte limit")
        start = offset + _BLOCK
        if start + size > len(payload):
            raise invalid(f"NEFF payload member {stripped!r} is truncated")
        if is_dir:
            if size:
                raise invalid(f"NEFF payload directory {stripped!r} has a size")
            dirs.add(stripped)
        else:
            files[stripped] = payload[start : start + size]
        offset = start + -(-size // _BLOCK) * _BLOCK
    return files, dirs



def build_payload(members: Mapping[str, bytes]) -> bytes:
    """A deterministic uncompressed ustar of ``members`` (path -> bytes): mtime 0, owner 0, mode 0644, in order.

    Public so tests and tools can assemble hand-made payloads; no validation happens here.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
