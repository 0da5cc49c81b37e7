"""Content sniffing identical to Go's ``net/http.DetectContentType``.

The Go peer (p2p-webapp) announces ``mimeType`` in file lists and file contents with that
function, so Peerdesk must produce byte-for-byte the same strings for the same data,
including Go's deviations from the WHATWG spec: RAR signatures from RAR Labs, no
``audio/basic`` (``.snd``) entry, ``image/x-icon`` for cursors too, wasm, and
``text/plain; charset=utf-8`` for empty input. The table order matters: the first
signature that matches wins, and the text rule is the last resort before
``application/octet-stream``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Go looks at no more than this many leading bytes.
SNIFF_LEN = 512

_WHITESPACE = b"\t\n\x0c\r "
#: Bytes that end an HTML tag name ("tag-terminating bytes" in the WHATWG spec).
_TAG_END = b" >"
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_FALLBACK = "application/octet-stream"


@dataclass(frozen=True)
class _Html:
    """Case-insensitive tag prefix after leading whitespace, then a tag-terminating byte."""

    tag: bytes

    def match(self, data: bytes, first_non_ws: int) -> str | None:
        data = data[first_non_ws:]
        if len(data) < len(self.tag) + 1:
            return None
        for expected, actual in zip(self.tag, data, strict=False):
            if ord("A") <= expected <= ord("Z"):
                actual &= 0xDF  # fold ASCII lower case onto upper case, as Go does
            if actual != expected:
                return None
        return _HTML if data[len(self.tag)] in _TAG_END else None


@dataclass(frozen=True)
class _Masked:
    """Every byte ANDed with ``mask`` must equal ``pattern`` (WHATWG pattern matching)."""

    mask: bytes
    pattern: bytes
    content_type: str
    skip_ws: bool = False

    def match(self, data: bytes, first_non_ws: int) -> str | None:
        if self.skip_ws:
            data = data[first_non_ws:]
        if len(data) < len(self.pattern):
            return None
        for byte, mask, expected in zip(data, self.mask, self.pattern, strict=False):
            if byte & mask != expected:
                return None
        return self.content_type


@dataclass(frozen=True)
class _Exact:
    """A plain prefix at offset 0 (leading whitespace is not skipped)."""

    prefix: bytes
    content_type: str

    def match(self, data: bytes, first_non_ws: int) -> str | None:
        return self.content_type if data.startswith(self.prefix) else None


def _mp4(data: bytes, first_non_ws: int) -> str | None:
    """An ``ftyp`` box whose size fits the data, with an ``mp4`` brand (WHATWG 6.2.1)."""
    if len(data) < 12:
        return None
    box_size = int.from_bytes(data[:4], "big")
    if len(data) < box_size or box_size % 4 != 0 or data[4:8] != b"ftyp":
        return None
    # Brands are 4-byte words from offset 8; offset 12 holds the minor version, not a brand.
    for offset in range(8, box_size, 4):
        if offset != 12 and data[offset : offset + 3] == b"mp4":
            return "video/mp4"
    return None


def _is_binary(byte: int) -> bool:
    """Control bytes that never occur in text (WHATWG "binary data byte")."""
    return byte <= 0x08 or byte == 0x0B or 0x0E <= byte <= 0x1A or 0x1C <= byte <= 0x1F


def _text(data: bytes, first_non_ws: int) -> str | None:
    if any(_is_binary(byte) for byte in data[first_non_ws:]):
        return None
    return _TEXT


def _riff(kind: bytes, content_type: str) -> _Masked:
    """RIFF container: 'RIFF', any 4-byte length, then the form type."""
    return _Masked(
        b"\xff" * 4 + b"\x00" * 4 + b"\xff" * len(kind), b"RIFF" + b"\x00" * 4 + kind, content_type
    )


_Matcher = Callable[[bytes, int], str | None]

_HTML_TAGS = (
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
)

# Same order as Go's sniffSignatures: the first match wins.
_SIGNATURES: tuple[_Matcher, ...] = (
    *(_Html(tag).match for tag in _HTML_TAGS),
    _Masked(b"\xff" * 5, b"<?xml", "text/xml; charset=utf-8", skip_ws=True).match,
    _Exact(b"%PDF-", "application/pdf").match,
    _Exact(b"%!PS-Adobe-", "application/postscript").match,
    # Byte order marks.
    _Masked(b"\xff\xff\x00\x00", b"\xfe\xff\x00\x00", "text/plain; charset=utf-16be").match,
    _Masked(b"\xff\xff\x00\x00", b"\xff\xfe\x00\x00", "text/plain; charset=utf-16le").match,
    _Masked(b"\xff\xff\xff\x00", b"\xef\xbb\xbf\x00", "text/plain; charset=utf-8").match,
    # Images.
    _Exact(b"\x00\x00\x01\x00", "image/x-icon").match,
    _Exact(b"\x00\x00\x02\x00", "image/x-icon").match,
    _Exact(b"BM", "image/bmp").match,
    _Exact(b"GIF87a", "image/gif").match,
    _Exact(b"GIF89a", "image/gif").match,
    _riff(b"WEBPVP", "image/webp").match,
    _Exact(b"\x89PNG\r\n\x1a\n", "image/png").match,
    _Exact(b"\xff\xd8\xff", "image/jpeg").match,
    # Audio and video, in the WHATWG order.
    _Masked(
        b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff",
        b"FORM\x00\x00\x00\x00AIFF",
        "audio/aiff",
    ).match,
    # Go writes these three as masks of all ones, which is a plain prefix test.
    _Exact(b"ID3", "audio/mpeg").match,
    _Exact(b"OggS\x00", "application/ogg").match,
    _Exact(b"MThd\x00\x00\x00\x06", "audio/midi").match,
    _riff(b"AVI ", "video/avi").match,
    _riff(b"WAVE", "audio/wave").match,
    _mp4,
    _Exact(b"\x1a\x45\xdf\xa3", "video/webm").match,
    # Fonts. Embedded OpenType: 34 ignored bytes, then "LP".
    _Masked(
        b"\x00" * 34 + b"\xff\xff", b"\x00" * 34 + b"LP", "application/vnd.ms-fontobject"
    ).match,
    _Exact(b"\x00\x01\x00\x00", "font/ttf").match,
    _Exact(b"OTTO", "font/otf").match,
    _Exact(b"ttcf", "font/collection").match,
    _Exact(b"wOFF", "font/woff").match,
    _Exact(b"wOF2", "font/woff2").match,
    # Archives. RAR per RAR Labs (the WHATWG table has it wrong; Go follows RAR Labs).
    _Exact(b"\x1f\x8b\x08", "application/x-gzip").match,
    _Exact(b"PK\x03\x04", "application/zip").match,
    _Exact(b"Rar!\x1a\x07\x00", "application/x-rar-compressed").match,
    _Exact(b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed").match,
    _Exact(b"\x00asm", "application/wasm").match,
    _text,
)


def detect_content_type(data: bytes) -> str:
    """The MIME type Go's ``http.DetectContentType`` gives ``data`` (first 512 bytes).

    Always a valid MIME type; ``application/octet-stream`` when nothing matches.
    """
    data = bytes(data[:SNIFF_LEN])
    first_non_ws = len(data) - len(data.lstrip(_WHITESPACE))
    for match in _SIGNATURES:
        content_type = match(data, first_non_ws)
        if content_type is not None:
            return content_type
    return _FALLBACK
