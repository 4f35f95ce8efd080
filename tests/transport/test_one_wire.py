"""One way to an HTTP/1.1 connection's transport for writing or ending it, checked on
the source.

A keep-alive answer may be held for the loop's next turn (``HttpConnection.cork``,
``WriteBatch``). Whatever writes to the connection or ends it before then must write
that answer first, or it is overtaken or lost (session 25 found two paths that did
not: a half-close and a drain). So the transport lives under a private name,
``HttpConnection._transport``, and only ``HttpConnection._wire`` (which writes the
held answer first) and ``HttpConnection.abort`` (which drops it, and says so) may
do more with it than ask about it: anywhere else in src/ the raw transport, or a
local name bound to it, is only asked about (is it closing, what it holds, its
extra info but its socket) or paused and resumed for reading, never written to,
closed, aborted, half-closed, given a new protocol, returned or handed on. A new
path that writes or ends goes through ``_wire``, or this test fails.

One exception, for the hot path (``Exchange.send_all``, where a call to ``_wire``
costs the pure build a frame per request): a ``write`` or ``writelines`` directly
in the body of an ``if`` whose test is, or is a conjunct (``and``) of,
``<conn>._corked is None``: nothing is held there, so nothing can be overtaken.
"""

from __future__ import annotations

import ast
from pathlib import Path

import colonnade

SRC = Path(colonnade.__file__).resolve().parent
CONNECTION = SRC / "transport" / "connection.py"

#: Where the raw transport may be used freely.
THE_WAYS = frozenset({"HttpConnection._wire", "HttpConnection.abort"})
#: What may be asked of it anywhere (get_extra_info: not its "socket").
ASKING = frozenset(
    {
        "is_closing",
        "get_write_buffer_size",
        "get_write_buffer_limits",
        "set_write_buffer_limits",
        "get_extra_info",
        "can_write_eof",
        "is_reading",
        "pause_reading",
        "resume_reading",
    }
)
ATTR = "_transport"


def _is_raw(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == ATTR


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _nothing_held(test: ast.expr) -> bool:
    """Whether ``test`` is, or has as a conjunct, ``<x>._corked is None``."""
    conjuncts = (
        test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
    )
    return any(
        isinstance(c, ast.Compare)
        and isinstance(c.left, ast.Attribute)
        and c.left.attr == "_corked"
        and len(c.ops) == 1
        and isinstance(c.ops[0], ast.Is)
        and isinstance(c.comparators[0], ast.Constant)
        and c.comparators[0].value is None
        for c in conjuncts
    )


def _guarded_write(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """``node.write(...)``/``node.writelines(...)`` as a statement directly in the body
    of an ``if`` that tests that nothing is held (see the module docstring)."""
    attribute = parents.get(node)
    if not isinstance(attribute, ast.Attribute) or attribute.attr not in ("write", "writelines"):
        return False
    call = parents.get(attribute)
    statement = parents.get(call) if isinstance(call, ast.Call) else None
    branch = parents.get(statement) if isinstance(statement, ast.Expr) else None
    return isinstance(branch, ast.If) and statement in branch.body and _nothing_held(branch.test)


def _asked(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` (the raw transport, or a name bound to it) is only asked about."""
    parent = parents.get(node)
    if isinstance(parent, ast.Compare):
        # ``x is None``, ``x is not None``
        return all(isinstance(op, ast.Is | ast.IsNot) for op in parent.ops) and all(
            isinstance(other, ast.Constant) and other.value is None
            for other in [parent.left, *parent.comparators]
            if other is not node
        )
    if isinstance(parent, ast.Attribute) and parent.value is node and parent.attr in ASKING:
        call = parents.get(parent)
        if not isinstance(call, ast.Call) or call.func is not parent:
            return False
        if parent.attr == "get_extra_info":
            first = call.args[0] if call.args else None
            return isinstance(first, ast.Constant) and first.value != "socket"
        return True
    return False


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((f"{prefix}{child.name}", child))
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def _source(value: ast.AST) -> ast.Name | None:
    """The name a value stored as the raw transport comes from: ``t``, ``cast(T, t)``."""
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "cast" and len(value.args) == 2:
        value = value.args[1]
    return value if isinstance(value, ast.Name) else None


def _aliases(function: ast.AST) -> tuple[set[str], set[ast.AST]]:
    """Local names bound to the raw transport in ``function`` (``t = self._transport``,
    ``self._transport = t = cast(T, param)``: ``t`` and ``param``), wherever in it: a
    name bound both to the raw transport and to ``_wire()``'s is one too (rename one
    of them); and the uses that are such a binding's source (``param`` there)."""
    names: set[str] = set()
    sources: set[ast.AST] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign | ast.NamedExpr):
            targets, value = [node.target], node.value
        else:
            continue
        if value is None:
            continue
        if _is_raw(value) or any(_is_raw(t) for t in targets):
            names.update(t.id for t in targets if isinstance(t, ast.Name))
            source = _source(value)
            if source is not None:
                names.add(source.id)
                sources.add(source)
    return names, sources


def violations(source: str, path: str, the_module: bool) -> list[str]:
    """Each use of the raw transport in ``source`` that is more than a question.
    ``the_module``: the connection's own module (elsewhere any use at all is one)."""
    tree = ast.parse(source)
    found: list[str] = []
    if not the_module:
        return [
            f"{path}:{node.lineno}: {ATTR} outside transport/connection.py"
            for node in ast.walk(tree)
            if _is_raw(node)
        ]
    parents = _parents(tree)
    seen: set[ast.AST] = set()
    for name, function in _functions(tree):
        aliases, sources = _aliases(function)
        for node in ast.walk(function):
            if node in seen:
                continue  # a nested function's, judged as its own
            seen.add(node)
            if name in THE_WAYS or name.startswith(tuple(f"{way}." for way in THE_WAYS)):
                continue
            load = isinstance(getattr(node, "ctx", None), ast.Load)
            raw = _is_raw(node) and load
            alias = isinstance(node, ast.Name) and node.id in aliases and load
            if (not raw and not alias) or node in sources:
                continue
            parent = parents.get(node)
            if raw and isinstance(parent, ast.Assign | ast.AnnAssign | ast.NamedExpr):
                continue  # bound to a local name: its uses are judged
            if not _asked(node, parents) and not _guarded_write(node, parents):
                found.append(f"{path}:{node.lineno}: {name}: {ast.unparse(parent or node)}")
    # Outside any function (a class body, the module): no use at all.
    for node in ast.walk(tree):
        if _is_raw(node) and node not in seen and isinstance(getattr(node, "ctx", None), ast.Load):
            found.append(f"{path}:{node.lineno}: {ATTR} outside a method")
    return found


def test_the_raw_transport_is_written_to_or_ended_only_through_wire() -> None:
    found: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        found += violations(path.read_text(), str(path.relative_to(SRC)), path == CONNECTION)
    assert not found, "\n".join(found)


def test_the_connection_module_uses_its_raw_transport() -> None:
    # Not vacuous: the names this test looks for are the connection's.
    tree = ast.parse(CONNECTION.read_text())
    names = dict(_functions(tree))
    assert set(THE_WAYS) <= set(names)
    assert sum(_is_raw(node) for node in ast.walk(tree)) > 10


_METHOD = """
class HttpConnection:
    def _wire(self):
        transport = self._transport
        transport.write(self._corked)
        return transport

    def abort(self):
        self._transport.abort()

    def f(self, conn):
{}
"""


def _judge(body: str, the_module: bool = True) -> list[str]:
    lines = "\n".join(f"        {line}" for line in body.strip().splitlines())
    return violations(_METHOD.format(lines), "x.py", the_module)


def test_the_check_finds_what_writes_or_ends() -> None:
    for bad in (
        "self._transport.write(b'')",
        "conn._transport.writelines((b'', b''))",
        "self._transport.close()",
        "self._transport.abort()",
        "self._transport.write_eof()",
        "self._transport.set_protocol(None)",
        "t = self._transport\nt.write(b'')",
        "self._transport = t = x\nif t is not None:\n    t.close()",
        "self._transport = cast(T, param)\nparam.close()",
        "t = self._transport\nif t is not None and not t.is_closing():\n    t.write(b'')",
        "sock = self._transport.get_extra_info('socket')",
        "helper(self._transport)",
        "return self._transport",
        "t = self._transport\nreturn t",
        "w = self._transport.write\nw(b'')",
        "t = self._transport\nt = self._wire()\nt.write(b'')",
        "t = self._transport\nif conn._corked is not None:\n    t.write(b'')",
        "t = self._transport\nif conn._corked is None or x:\n    t.write(b'')",
        "t = self._transport\nif conn._corked is None:\n    t.close()",
        "t = self._transport\nif conn._corked is None:\n    pass\nelse:\n    t.write(b'')",
        "t = self._transport\nif conn._corked is None:\n    if x:\n        t.write(b'')",
    ):
        assert _judge(bad), bad
    assert _judge("self._transport.is_closing()", the_module=False)


def test_the_check_lets_questions_and_the_wire_pass() -> None:
    for good in (
        "t = self._transport\nreturn t is None or t.is_closing()",
        "return self._transport.get_write_buffer_size() if self._transport is not None else 0",
        "self._transport.pause_reading()",
        "self._transport = None",
        "self._transport = t = cast(T, param)\nt.set_write_buffer_limits(0)",
        "peer = self._transport.get_extra_info('peername')",
        "t = self._wire()\nif t is not None:\n    t.write(b'')\n    t.close()",
        "self._wire().set_protocol(None)",
        "t = self._transport\nif conn._corked is None and t is not None:\n    t.write(b'')",
    ):
        assert not _judge(good), good
