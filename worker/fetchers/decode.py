"""Bytes to text for HTML bodies, the way a browser would pick the charset.

Order (a simplified WHATWG "encoding sniffing"): byte order mark, the Content-Type header's
charset, a ``<meta charset>`` or ``http-equiv`` declaration in the first 2 KB, UTF-8 if the
body decodes strictly as UTF-8, else statistical detection (charset_normalizer) for
non-Latin scripts (Shift_JIS, GB18030, EUC-KR, Big5, windows-1251…) and windows-1252 for
Latin-script text, the browsers' default for undeclared Western pages: detectors often take
short windows-1252 text for another Latin code page (cp1250), and a browser would not.
Bad bytes become U+FFFD instead of an error: a page with one bad byte is still a page.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

# How far into the body a <meta> declaration counts (the HTML spec's prescan reads 1024
# bytes; real pages put long <title>s and scripts first, so we allow a little more).
META_SCAN_BYTES = 2048

_FALLBACK = "cp1252"

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BOM_PREFIXES = tuple(bom for bom, _ in _BOMS)

# <meta charset="x">, and <meta http-equiv="content-type" content="text/html; charset=x">
# whatever the attribute order; bytes regexes so nothing is decoded twice.
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.I)

# Labels that browsers read differently from Python's codec of the same name.
_WHATWG_ALIASES = {
    "iso-8859-1": _FALLBACK,
    "iso8859-1": _FALLBACK,
    "latin1": _FALLBACK,
    "latin-1": _FALLBACK,
    "l1": _FALLBACK,
    "ascii": _FALLBACK,
    "us-ascii": _FALLBACK,
    "windows-1252": _FALLBACK,
    "x-sjis": "shift_jis",
    "gb2312": "gb18030",  # browsers decode GB2312 labels as GBK/GB18030, a superset
    "gbk": "gb18030",
}


# WHATWG's windows-1252 maps the five bytes Python's cp1252 leaves undefined (0x81, 0x8d,
# 0x8f, 0x90, 0x9d) to the C1 controls of the same value, as latin-1 does; browsers follow
# it, so the http engine does too and both engines read the same text.
_C1_ERRORS = "trawl-cp1252-c1"


def _c1_controls(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error(_C1_ERRORS, _c1_controls)


def _errors_for(codec: str) -> str:
    return _C1_ERRORS if codec == _FALLBACK else "replace"


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """Python's codec name for a charset label, or None for labels we cannot decode."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    alias = _WHATWG_ALIASES.get(label)
    if alias is not None:
        return alias
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # A <meta> cannot declare UTF-16 (the bytes that held it would be unreadable); the
    # spec says to read such pages as UTF-8. Header declarations get the same treatment
    # without a BOM, which is what browsers do in practice.
    if name.startswith("utf-16") or name.startswith("utf-32"):
        return "utf-8"
    return name


def charset_from_content_type(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header value, as given."""
    if not content_type or "charset" not in content_type.lower():
        return None
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def sniff_meta_charset(head: bytes) -> str | None:
    """A charset declared by a <meta> tag in ``head`` (the body's first bytes)."""
    match = _META_CHARSET.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


def _detect(body: bytes) -> str | None:
    # Imported here: it loads some twenty codecs, and most pages never get this far.
    import charset_normalizer

    best = charset_normalizer.from_bytes(body).best()
    return None if best is None else str(best.encoding)


def detect_charset(body: bytes) -> str:
    """The codec for an undeclared, non-UTF-8 body."""
    codec = codec_for(_detect(body))
    if codec is None or codecs.lookup(codec).name in _latin_single_byte():
        return _FALLBACK
    return codec


# Latin-script single-byte code pages: told apart from windows-1252 only by a few accented
# letters, which is where detectors guess wrong on short text. Browsers say windows-1252.
# Looked up on first use: each lookup imports a codec module.
@lru_cache(maxsize=1)
def _latin_single_byte() -> frozenset[str]:
    return frozenset(_canonical(name) for name in _LATIN_SINGLE_BYTE_NAMES)


def _canonical(name: str) -> str:
    return codecs.lookup(name).name


_LATIN_SINGLE_BYTE_NAMES = (
    "cp1250",
    "cp1252",
    "cp1254",
    "cp1257",
    "cp850",
    "cp437",
    "mac_roman",
    "mac_latin2",
    "latin_1",
    "iso8859_2",
    "iso8859_3",
    "iso8859_4",
    "iso8859_9",
    "iso8859_10",
    "iso8859_13",
    "iso8859_14",
    "iso8859_15",
    "iso8859_16",
)


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Decode an HTML body (see the module docstring for the order). Never raises."""
    if body.startswith(_BOM_PREFIXES):
        for bom, bom_codec in _BOMS:
            if body.startswith(bom):
                return body.decode(bom_codec, "replace")
    codec = codec_for(charset_from_content_type(content_type)) or codec_for(
        sniff_meta_charset(body[:META_SCAN_BYTES])
    )
    if codec is None:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            codec = detect_charset(body)
    return body.decode(codec, _errors_for(codec))
