"""detect_content_type must give exactly what Go's http.DetectContentType gives.

GO_SNIFF_TESTS is the table of Go's net/http/sniff_test.go (current master), case for
case. EDGE_CASES pin down rules of the algorithm that table does not reach (the order of
signatures, the 512-byte limit, where leading whitespace counts), as read from Go's
sniff.go.
"""

from __future__ import annotations

import pytest

from core.files.mime import SNIFF_LEN, detect_content_type

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"

GO_SNIFF_TESTS: list[tuple[str, bytes, str]] = [
    ("Empty", b"", TEXT),
    ("Binary", bytes([1, 2, 3]), BINARY),
    ("HTML document #1", b"<HtMl><bOdY>blah blah blah</body></html>", HTML),
    ("HTML document #2", b"<HTML></HTML>", HTML),
    ("HTML document #3 (leading whitespace)", b"   <!DOCTYPE HTML>...", HTML),
    ("HTML document #4 (leading CRLF)", b"\r\n<html>...", HTML),
    ("Plain text", "This is not HTML. It has ☃ though.".encode(), TEXT),
    ("XML", b"\n<?xml!", "text/xml; charset=utf-8"),
    ("Windows icon", b"\x00\x00\x01\x00", "image/x-icon"),
    ("Windows cursor", b"\x00\x00\x02\x00", "image/x-icon"),
    ("BMP image", b"BM...", "image/bmp"),
    ("GIF 87a", b"GIF87a", "image/gif"),
    ("GIF 89a", b"GIF89a...", "image/gif"),
    ("WEBP image", b"RIFF\x00\x00\x00\x00WEBPVP", "image/webp"),
    ("PNG image", b"\x89PNG\x0d\x0a\x1a\x0a", "image/png"),
    ("JPEG image", b"\xff\xd8\xff", "image/jpeg"),
    ("MIDI audio", b"MThd\x00\x00\x00\x06\x00\x01", "audio/midi"),
    ("MP3 audio/MPEG audio", b"ID3\x03\x00\x00\x00\x00\x0f", "audio/mpeg"),
    ("WAV audio #1", b"RIFFb\xb8\x00\x00WAVEfmt \x12\x00\x00\x00\x06", "audio/wave"),
    ("WAV audio #2", b"RIFF,\x00\x00\x00WAVEfmt \x12\x00\x00\x00\x06", "audio/wave"),
    (
        "AIFF audio #1",
        b"FORM\x00\x00\x00\x00AIFFCOMM\x00\x00\x00\x12\x00\x01\x00\x00\x57\x55\x00\x10\x40\x0d"
        b"\xf3\x34",
        "audio/aiff",
    ),
    (
        "OGG audio",
        b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x7e\x46\x00\x00\x00\x00\x00\x00\x1f\xf6"
        b"\xb4\xfc\x01\x1e\x01\x76\x6f\x72",
        "application/ogg",
    ),
    ("Must not match OGG", b"owow\x00", BINARY),
    ("Must not match OGG", b"oooS\x00", BINARY),
    ("Must not match OGG", b"oggS\x00", BINARY),
    ("MP4 video", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom<\x06t\xbfmdat", "video/mp4"),
    # Go's Go-string literal "LISTÀ" is UTF-8 encoded.
    ("AVI video #1", b"RIFF,O\n\x00AVI LIST" + "À".encode(), "video/avi"),
    ("AVI video #2", b"RIFF,\n\x00\x00AVI LIST" + "À".encode(), "video/avi"),
    ("TTF sample  I", b"\x00\x01\x00\x00\x00\x17\x01\x00\x00\x04\x01\x60\x4f", "font/ttf"),
    ("TTF sample II", b"\x00\x01\x00\x00\x00\x0e\x00\x80\x00\x03\x00\x60\x46", "font/ttf"),
    (
        "OTTO sample  I",
        b"\x4f\x54\x54\x4f\x00\x0e\x00\x80\x00\x03\x00\x60\x42\x41\x53\x45",
        "font/otf",
    ),
    (
        "woff sample  I",
        b"\x77\x4f\x46\x46\x00\x01\x00\x00\x00\x00\x30\x54\x00\x0d\x00\x00",
        "font/woff",
    ),
    ("woff2 sample", b"\x77\x4f\x46\x32\x00\x01\x00\x00\x00", "font/woff2"),
    ("wasm sample", b"\x00\x61\x73\x6d\x01\x00", "application/wasm"),
    ("RAR v1.5-v4.0", b"Rar!\x1a\x07\x00", "application/x-rar-compressed"),
    ("RAR v5+", b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
    ("Incorrect RAR v1.5-v4.0", b"Rar \x1a\x07\x00", BINARY),
    ("Incorrect RAR v5+", b"Rar \x1a\x07\x01\x00", BINARY),
]

EDGE_CASES: list[tuple[str, bytes, str]] = [
    # HTML: a known tag, any case, after whitespace, then a space or '>'.
    ("tag needs a terminating byte", b"<HTMLX>", TEXT),
    ("slash does not terminate a tag", b"<br/>", TEXT),
    ("space terminates a tag", b"<p class=x>", HTML),
    ("comment", b"\t\x0c<!-- hi -->", HTML),
    ("tag cut short", b"<html", TEXT),
    ("unknown tag", b"<section>", TEXT),
    ("upper-case letters in the signature only", b"<!doctype html>", HTML),
    # XML skips whitespace; exact signatures do not.
    ("xml after spaces", b"   <?xml version='1.0'?>", "text/xml; charset=utf-8"),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "application/pdf"),
    ("pdf after a space is not pdf", b" %PDF-1.7", TEXT),
    ("postscript", b"%!PS-Adobe-3.0", "application/postscript"),
    # Byte order marks: four bytes are needed, the last ones are ignored.
    ("utf-16be", b"\xfe\xff\x00h\x00i", "text/plain; charset=utf-16be"),
    ("utf-16le", b"\xff\xfeh\x00i\x00", "text/plain; charset=utf-16le"),
    ("utf-8 bom", b"\xef\xbb\xbfhello", TEXT),
    ("utf-16 bom alone is too short", b"\xfe\xff", TEXT),
    ("webm", b"\x1a\x45\xdf\xa3\x01\x00", "video/webm"),
    ("gzip", b"\x1f\x8b\x08\x00\x00\x00", "application/x-gzip"),
    ("zip", b"PK\x03\x04\x14\x00", "application/zip"),
    ("font collection", b"ttcf\x00\x01\x00\x00", "font/collection"),
    ("embedded opentype", b"\x01" * 34 + b"LP", "application/vnd.ms-fontobject"),
    # .snd (audio/basic) was dropped from Go's table; such data falls through.
    ("no audio/basic", b".snd\x00\x00\x00\x18", BINARY),
    # MP4: box size must be a multiple of 4 and fit in the data; offset 12 is not a brand.
    ("mp4 brand at 16", b"\x00\x00\x00\x14ftypisom\x00\x00\x02\x00mp41", "video/mp4"),
    ("mp4 size not a multiple of 4", b"\x00\x00\x00\x13ftypmp42\x00\x00\x00\x00mp4", BINARY),
    ("mp4 box larger than data", b"\x00\x00\x00\x40ftypmp42\x00\x00\x00\x00mp42", BINARY),
    ("mp4 brand only as minor version", b"\x00\x00\x00\x10ftypisommp42", BINARY),
    # Text: ESC and form feed are text; other C0 controls are binary.
    ("escape is text", b"\x1b[1mbold", TEXT),
    ("vertical tab is binary", b"a\x0bb", BINARY),
    ("only whitespace", b" \r\n\t", TEXT),
    # Only the first 512 bytes are looked at.
    ("binary after the limit", b"a" * SNIFF_LEN + b"\x00", TEXT),
    ("binary inside the limit", b"a" * (SNIFF_LEN - 1) + b"\x00", BINARY),
]


def _ids(cases: list[tuple[str, bytes, str]]) -> list[str]:
    return [desc for desc, _, _ in cases]


@pytest.mark.parametrize(("desc", "data", "want"), GO_SNIFF_TESTS, ids=_ids(GO_SNIFF_TESTS))
def test_go_sniff_table(desc: str, data: bytes, want: str) -> None:
    assert detect_content_type(data) == want, desc


@pytest.mark.parametrize(("desc", "data", "want"), EDGE_CASES, ids=_ids(EDGE_CASES))
def test_algorithm_rules(desc: str, data: bytes, want: str) -> None:
    assert detect_content_type(data) == want, desc


def test_accepts_any_bytes_like() -> None:
    assert detect_content_type(bytearray(b"GIF89a")) == "image/gif"
    assert detect_content_type(memoryview(b"%PDF-")) == "application/pdf"
