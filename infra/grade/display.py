"""Strings from the network (or typed by the user) made safe for a terminal.

A server controls its status line, headers and body; the text report must never pass an
ESC, a NUL or a bidi override to the terminal, nor print 64 KiB of it. `escape()` writes
every non-printable character as a Python escape (`\\x1b`, `\\x00`, `\\u202e`), and
`shown()` also cuts the text and says how long it was.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` with each non-printable character (str.isprintable) written as an escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(text: str, limit: int = 80, unit: str = "characters") -> str:
    """`text` escaped and cut to about `limit` characters, noting its full length."""
    if len(text) <= limit:
        return escape(text)
    return f"{escape(text[:limit])}... ({len(text):,} {unit} in all)"
