"""Every command the project prints or documents, collected from where it is written:

- the CLI's message strings (infra/**/*.py, not docstrings): each backquoted command, each
  `make TARGET ...` the text names, each example line of a --help epilog;
- the fenced `sh` blocks of README.md and docs/*.md: each line (for a `$ ` transcript, each
  prompt line), with what the block exported before it.

tests/test_hints.py runs them (or allow-lists them, with a reason).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The first word of a command: what a user would type at the prompt.
COMMAND_WORDS = ("make", ".venv/bin/", "python", "python3", "pip", "flask", "aws", "docker",
                 "kill", "rm", "curl", "apt-get", "brew", "export", "uv", "git", "mkdir",
                 "cp", "cd", "(cd", "env", "sudo", "AWS_", "SEEDLB_", "LOCALSTACK_")


@dataclass(frozen=True)
class Command:
    text: str  # as printed; placeholders of an f-string stay as {expression}
    where: str  # file:line
    exports: tuple[str, ...] = ()  # `export` lines of its doc block before it
    kind: str = "command"  # command, synopsis ([options]), transcript ($ prompt)
    placeholders: tuple[str, ...] = field(default=(), compare=False)
    block: str = field(default="", compare=False)  # its doc block: file:line of the fence


def is_command(text: str) -> bool:
    if text.startswith("make "):
        word = text.split()[1]
        return word in make_targets() or "-" in word
    # a shell variable set for the lines after it: BUILD=$(mktemp -d)
    return text.startswith(COMMAND_WORDS) or bool(re.match(r"^[A-Z_][A-Z0-9_]*=\S", text))


# --- the CLI's strings ------------------------------------------------------------------------
def _docstring_ids(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _text(node: ast.AST) -> tuple[str, tuple[str, ...]] | None:
    """A string literal as it prints, each f-string field as {its expression}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, ()
    if isinstance(node, ast.JoinedStr):
        parts, fields = [], []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                expr = ast.unparse(value.value)
                fields.append(expr)
                parts.append("{" + expr + "}")
        return "".join(parts), tuple(fields)
    return None


# `make TARGET VAR=value ...` in a message's prose; a value may hold an f-string field
# ({state['lb_dns']}) or a <placeholder with spaces>.
MAKE_IN_PROSE = re.compile(
    r"(?<![\w`/-])make ([a-z][a-z0-9-]*)"
    r"(?: +[A-Z][A-Z_]*=(?:'[^'\n]*'|\{[^{}]*\}|<[^<>]*>|[^\s`'\",;){<])+)*")


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def hints_in(text: str) -> list[str]:
    """The commands a message prints: backquoted ones, `make X` in prose, example lines."""
    found = [span.strip() for span in re.findall(r"`([^`\n]+)`", text)
             if is_command(span.strip())]
    prose = re.sub(r"`[^`\n]+`", " ", text)
    targets = make_targets()
    # `make the listener ...` is English; a target the Makefile lacks but that looks like
    # one (a hyphen) is a hint that fails.
    found += [m.group(0).strip() for m in MAKE_IN_PROSE.finditer(prose)
              if m.group(1) in targets or "-" in m.group(1)]
    for line in _joined(prose.splitlines()):  # an epilog's examples: "  make plan   # ..."
        line = line.split("  #")[0].strip()
        if line.startswith(("python -m", ".venv/bin/", "AWS_ENDPOINT_URL=")) and is_command(line):
            found.append(line)
    return list(dict.fromkeys(found))


def source_hints(root: Path = REPO / "infra") -> list[Command]:
    commands = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        skip = _docstring_ids(tree)
        for node in ast.walk(tree):  # an f-string's parts are read with it, not alone
            if isinstance(node, ast.JoinedStr):
                skip.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            got = _text(node)
            if got is None:
                continue
            text, fields = got
            for hint in hints_in(text):
                used = tuple(f for f in fields if "{" + f + "}" in hint)
                commands.append(Command(hint, f"{path.relative_to(REPO)}:{node.lineno}",
                                        placeholders=used))
    return _unique(commands)


def _unique(commands: list[Command]) -> list[Command]:
    seen, out = set(), []
    for c in commands:
        if (c.text, c.exports) not in seen:
            seen.add((c.text, c.exports))
            out.append(c)
    return out


# --- the docs' fenced commands --------------------------------------------------------------
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def doc_commands(paths: list[Path] | None = None) -> list[Command]:
    return _unique([c for block in doc_blocks(paths).values() for c in block])


def doc_blocks(paths: list[Path] | None = None) -> dict[str, list[Command]]:
    """Each fenced block's commands, in order, by the block's file:line."""
    paths = paths or [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    blocks: dict[str, list[Command]] = {}
    for path in paths:
        text = path.read_text()
        for block in FENCE.finditer(text):
            lang, body = block.group(1), block.group(2)
            if lang not in ("sh", "shell", "bash", "console") or body.startswith("#!"):
                continue  # a file's contents (a script shown), not commands to type
            first = text[:block.start()].count("\n") + 2
            block_id = f"{path.relative_to(REPO)}:{first - 1}"
            commands = blocks.setdefault(block_id, [])
            transcript = any(line.startswith("$ ") for line in body.splitlines())
            exports: list[str] = []
            for offset, line in enumerate(_joined(body.splitlines())):
                if transcript:
                    if not line.startswith("$ "):
                        continue  # the output shown
                    line = line[2:]
                line = strip_comment(line).strip()
                if not line or not is_command(line):
                    continue
                kind = "synopsis" if re.search(r"\[-{1,2}\w|\b[A-Z_]{3,}\b \[", line) \
                    or re.search(r" \[[^\]=]*\]", line) else \
                    "transcript" if transcript else "command"
                where = f"{path.relative_to(REPO)}:{first + offset}"
                commands.append(Command(line, where, tuple(exports), kind, block=block_id))
                if line.startswith("export "):
                    exports.append(line)
    return blocks


def _joined(lines: list[str]) -> list[str]:
    """Backslash-continued lines as one (the line numbers of the first)."""
    out: list[str] = []
    carry = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            carry += line.rstrip()[:-1] + " "
            out.append("")
            continue
        out.append(carry + line)
        carry = ""
    return out


def strip_comment(line: str) -> str:
    """The command without its trailing `# comment` (a # inside quotes stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line
