"""Where each key of a TOML document is written, for error messages.

``tomllib`` parses but keeps no positions. This scanner walks the text once and
records, for every dotted key it can see (``sites[0].applications[1].pool``,
``locations[2].directory_browse.enabled``, ``server.modules[3]``), the line it
starts on. It understands table headers, arrays of tables, dotted keys, inline
tables and multi-line arrays and strings; it is only used to point at a line,
never to read values, so where it is unsure it points at the enclosing key.
"""

from __future__ import annotations

import re

_BARE = r"[A-Za-z0-9_-]+"
_KEY_PART = rf"(?:{_BARE}|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=\s*")
_PART = re.compile(_KEY_PART)


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


class KeyLines:
    """Dotted key → line number for one TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        self._aot: dict[str, int] = {}  # array-of-tables path → last index
        self._scan(text.splitlines())

    def line_for(self, key: str) -> int | None:
        """The line of ``key``, else of its nearest enclosing key that is written."""
        key = key.strip(".")
        while key:
            found = self.lines.get(key)
            if found is not None:
                return found
            cut = max(key.rfind("."), key.rfind("["))
            if cut <= 0:
                break
            key = key[:cut]
        return self.lines.get(key)

    # -- scanning -----------------------------------------------------------------

    def _resolve(self, parts: list[str]) -> str:
        path = ""
        for part in parts:
            path = f"{path}.{part}" if path else part
            index = self._aot.get(path)
            if index is not None:
                path = f"{path}[{index}]"
        return path

    def _scan(self, lines: list[str]) -> None:
        prefix = ""
        i = 0
        while i < len(lines):
            line = lines[i]
            number = i + 1
            header = _HEADER.match(line)
            if header:
                parts = _parts(header.group(2))
                if header.group(1) == "[[":
                    base = self._resolve(parts[:-1])
                    path = f"{base}.{parts[-1]}" if base else parts[-1]
                    self._aot[path] = self._aot.get(path, -1) + 1
                    self.lines.setdefault(path, number)
                    prefix = f"{path}[{self._aot[path]}]"
                else:
                    prefix = self._resolve(parts)
                self.lines[prefix] = number
                # The tables a header implies (``[a.b]`` makes ``a``) are written
                # here too, unless a line named them before (found by fuzzing: an
                # error about ``a`` had no line).
                for end in range(1, len(parts)):
                    self.lines.setdefault(self._resolve(parts[:end]), number)
                i += 1
                continue
            assign = _ASSIGN.match(line)
            if not assign:
                i += 1
                continue
            key = ".".join(_parts(assign.group(1)))
            full = f"{prefix}.{key}" if prefix else key
            self.lines[full] = number
            rest = line[assign.end() :]
            i = self._value(full, rest, lines, i)

    def _value(self, key: str, rest: str, lines: list[str], i: int) -> int:
        """Record what a value contains; return the index of the line after it."""
        for quote in ('"""', "'''"):
            if rest.startswith(quote) and rest.count(quote) == 1:
                i += 1
                while i < len(lines) and quote not in lines[i]:
                    i += 1
                return i + 1
        if rest.startswith("{"):
            self._inline(key, rest, i + 1)
            return i + 1
        if rest.startswith("["):
            return self._array(key, lines, i, len(lines[i]) - len(rest))
        return i + 1

    def _inline(self, key: str, text: str, number: int) -> None:
        # Keys of an inline table on one line: `{ a = 1, b = { c = 2 } }`.
        depth_keys: list[str] = [key]
        pos = 0
        for match in re.finditer(rf"([{{,])\s*({_DOTTED})\s*=|(\}})", text):
            if match.group(3):
                if len(depth_keys) > 1:
                    depth_keys.pop()
                continue
            pos = match.end()
            sub = ".".join(_parts(match.group(2)))
            full = f"{depth_keys[-1]}.{sub}"
            self.lines.setdefault(full, number)
            if text[pos:].lstrip().startswith("{"):
                depth_keys.append(full)

    def _array(self, key: str, lines: list[str], i: int, col: int) -> int:
        # Walk characters from the opening bracket, counting top-level elements
        # and noting the line each one starts on; strings are skipped whole.
        depth = 0
        index = 0
        expecting = True
        while i < len(lines):
            line = lines[i]
            j = col
            while j < len(line):
                ch = line[j]
                if ch == "#":
                    break
                if ch in "\"'":
                    end = line.find(ch, j + 1)
                    while end > 0 and ch == '"' and line[end - 1] == "\\":
                        end = line.find(ch, end + 1)
                    if depth == 1 and expecting:
                        self.lines.setdefault(f"{key}[{index}]", i + 1)
                        expecting = False
                    j = len(line) if end < 0 else end + 1
                    continue
                if ch in "[{":
                    if depth == 1 and expecting:
                        self.lines.setdefault(f"{key}[{index}]", i + 1)
                        expecting = False
                        if ch == "{":
                            self._inline(f"{key}[{index}]", line[j:], i + 1)
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth == 0:
                        return i + 1
                elif ch == "," and depth == 1:
                    index += 1
                    expecting = True
                elif not ch.isspace() and depth == 1 and expecting:
                    self.lines.setdefault(f"{key}[{index}]", i + 1)
                    expecting = False
                j += 1
            i += 1
            col = 0
        return i
