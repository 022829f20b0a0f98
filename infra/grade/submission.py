"""A Gradescope submission as students make them: find their text file, read its first lines.

The submission is a text file (any name ending in .txt) whose first non-blank line is the
load balancer's DNS name; the next non-blank line, if any, lists the instances' public IPs
(`ip1,ip2`); `none`, `n/a` or `-` there means no instances. Whatever the student uploaded is
read as hostile input:

- macOS's zip adds `__MACOSX/._lb.txt` (binary AppleDouble data) next to `lb.txt`, and
  editors leave dotfiles: hidden files and folders, `__MACOSX/`, symlinks and anything that
  is not a regular file are skipped, as is a .txt file that is not text;
- Notepad's "Unicode" is UTF-16 with a byte order mark; "UTF-8" may start with one: both
  are read, and so is plain UTF-8;
- only the first MAX_BYTES of the file are read, so a 50 MB file costs nothing;
- the address never reaches a command line: a line starting with `-` is refused, not
  taken for an option.

Each problem is a SubmissionError whose message is written for the student: it goes into
results.json, which they see.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from infra.errors import UserError
from infra.grade.display import shown

MAX_BYTES = 64 * 1024  # a DNS name and a few IPs fit many times over
MAX_LINE = 1000  # characters: a DNS name is at most 253
NO_INSTANCES = {"none", "n/a", "na", "-", "no"}
EXAMPLE = "my-lb-123.us-east-1.elb.amazonaws.com"
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"  # a BOM or zero-width space pasted along
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))


class SubmissionError(UserError):
    """The submission cannot be graded; the message is for the student."""


@dataclass(frozen=True)
class Submission:
    file: str  # the text file's name inside the submission
    address: str
    instances: str  # "" for none


def read_submission(folder: str | Path) -> Submission:
    folder = Path(folder)
    skipped: list[str] = []
    for path in _candidates(folder, skipped):
        text = _read_text(path)
        name = shown(str(path.relative_to(folder)), 60)
        if text is None:
            skipped.append(f"{name} (not text)")
            continue
        return _parse(name, text)
    found = f" (skipped: {', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})" \
        if skipped else ""
    raise SubmissionError(f"No .txt file in your submission{found}: submit a plain text file "
                          f"(e.g. lb.txt) whose first line is your load balancer's DNS name, "
                          f"e.g. {EXAMPLE}")


def _candidates(folder: Path, skipped: list[str]) -> list[Path]:
    """The .txt files to try, in name order: no hidden files or folders, no __MACOSX/, no
    symlinks, regular files only."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # never follows links
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            if not filename.lower().endswith(".txt"):
                continue
            if filename.startswith("."):
                skipped.append(f"{shown(filename, 40)} (hidden)")
                continue
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                found.append(path)
    return found


def _read_text(path: Path) -> str | None:
    """The decoded start of the file, or None when it is not text."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_BYTES)
    encoding, bom = "utf-8", b""
    for mark, name in _BOMS:
        if data.startswith(mark):
            encoding, bom = name, mark
            break
    try:  # incremental: a character cut at MAX_BYTES is left out, not an error
        text = codecs.getincrementaldecoder(encoding)().decode(data[len(bom):], final=False)
    except UnicodeDecodeError:
        return None
    if "\x00" in text:  # UTF-16 without its mark, or binary data that happens to decode
        return None
    return text


def _parse(name: str, text: str) -> Submission:
    lines = [line.strip().strip(_INVISIBLE).strip() for line in re.split(r"\r\n|\r|\n", text)]
    filled = [line for line in lines if line]
    if not filled:
        raise SubmissionError(f"Your file {name} is empty: its first line must be your load "
                              f"balancer's DNS name, e.g. {EXAMPLE}")
    address = filled[0]
    if len(address) > MAX_LINE:
        raise SubmissionError(f"The first line of {name} is {len(address):,} characters long: "
                              f"it must be only your load balancer's DNS name, e.g. {EXAMPLE}")
    if address.startswith("-"):
        raise SubmissionError(f"The first line of {name} ('{shown(address, 40)}') starts with "
                              f"'-': it must be your load balancer's DNS name, e.g. {EXAMPLE}")
    instances = filled[1] if len(filled) > 1 else ""
    if instances.lower() in NO_INSTANCES:
        instances = ""
    elif len(instances) > MAX_LINE or instances.startswith("-"):
        raise SubmissionError(f"The second line of {name} ('{shown(instances, 40)}') should "
                              "list your instances' public IPs, separated by commas "
                              "(3.91.0.10,54.2.3.4), or be left out (or say none)")
    return Submission(name, address, instances)
