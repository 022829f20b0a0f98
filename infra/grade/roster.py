"""A class roster from a spreadsheet's CSV export: one student per row, in file order.

Columns are found by name in the header row, in any case and order: `student` and `address`
are required, `instances` (comma-separated, inside quotes) is optional, and others are
ignored. A UTF-8 byte order mark, CRLF line ends, quoted fields and `;` or tab separators
(spreadsheets in some locales) are all accepted. Nothing in a row is judged here: an empty
or invalid address is the gradebook's FAIL for that student, never a reason to stop. A cell
longer than MAX_CELL (a pasted file, a hostile submission) is cut, and the row carries a
`problem`: a FAIL for that row only, where the csv module would stop the whole file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from infra.errors import UserError
from infra.grade.display import shown

REQUIRED = ("student", "address")
OPTIONAL = ("instances",)
MAX_CELL = 2048  # characters: a DNS name is at most 253, a list of instances a few dozen


@dataclass(frozen=True)
class Student:
    line: int  # in the file, for messages ("rows 3, 7")
    student: str
    address: str
    instances: str = ""
    problem: str = ""  # why this row cannot be graded as it stands (a cell too large)


def read_roster(path: str | Path) -> list[Student]:
    """The roster's students, in order; UserError (exit 2) when the file cannot be one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"roster {shown(str(path))} does not exist") from None
    except UnicodeDecodeError:
        raise UserError(f"roster {shown(str(path))} is not UTF-8 text: export it as "
                        "'CSV UTF-8' from the spreadsheet") from None
    except OSError as exc:
        raise UserError(f"cannot read roster {shown(str(path))}: {exc.strerror}") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # cells are judged per row, below
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise UserError(f"roster {shown(str(path))} is not a CSV file the grader can read "
                        f"(line {reader.line_num}: {exc})") from None
    finally:
        csv.field_size_limit(limit)
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]  # blank lines
    if not rows:
        raise UserError(f"roster {shown(str(path))} is empty: it needs a header row with "
                        "'student' and 'address' columns")
    names = [cell.strip().lower() for cell in rows[0][1]]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        found = ", ".join(f"'{shown(n, 30)}'" for n in names if n) or "none"
        raise UserError(f"roster {shown(str(path))} has no {' and no '.join(map(repr, missing))} "
                        f"column (columns found: {found}); the header row needs 'student' "
                        "and 'address' ('instances' is optional)")
    where = {name: names.index(name) for name in (*REQUIRED, *OPTIONAL) if name in names}
    students = []
    for number, row in rows[1:]:

        def cell(name: str, row=row) -> str:
            i = where.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        values = {name: cell(name) for name in (*REQUIRED, *OPTIONAL)}
        large = [f"'{name}' has {len(v):,} characters" for name, v in values.items()
                 if len(v) > MAX_CELL]
        problem = ""
        if large:
            problem = (f"{' and '.join(large)}, more than the {MAX_CELL:,} a cell may have: "
                       "ask the student for the load balancer's DNS name")
            values = {name: shown(v, 200) for name, v in values.items()}
        students.append(Student(number, values["student"], values["address"],
                                values["instances"], problem))
    return students


def _delimiter(text: str) -> str:
    """',' unless the header row holds more ';' or tabs (a spreadsheet in some locales)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    return max(",;\t", key=lambda d: (header.count(d), d == ","))
