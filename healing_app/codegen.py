"""Validate and precisely patch task code.

Pure engine: no Django imports. Task code is a module with ``def run(page, params)``
using Playwright's sync API (DESIGN.md §4).

- ``validate_task_code`` is the gate when a person saves code.
- ``check_generated_code`` is the safety gate for any machine-written code (heuristic
  or LLM): it returns violations rather than raising, so the pipeline can record why a
  candidate was refused.
- The patch operations rewrite one source line with libcst, so formatting and comments
  survive and the reviewer's diff shows only the fix.
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib
import json
import re
import types
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import libcst as cst
from libcst.metadata import (
    CodeRange,
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
)

from healing_app.sites import url_allowed
from tasks_app.runner.protocol import ENTER_FRAME

MAX_CODE_BYTES = 256 * 1024

# Module -> names that may be imported from it (None: any public name that is not itself a module:
# `urllib.parse.sys` or `datetime.sys` would hand over the interpreter). playwright.sync_api is
# restricted because sync_playwright() would start a second, unsandboxed browser.
ALLOWED_IMPORTS: Mapping[str, frozenset[str] | None] = {
    "__future__": None,
    "re": None,
    "json": None,
    "time": None,
    "datetime": None,
    "math": None,
    "urllib.parse": None,
    "playwright.sync_api": frozenset(
        {"expect", "Error", "TimeoutError", "Page", "Locator", "FrameLocator", "Frame",
         "ElementHandle", "Response", "Request"}
    ),
}

FORBIDDEN_NAMES = frozenset(
    {"os", "sys", "subprocess", "socket", "eval", "exec", "compile", "open", "__import__",
     "globals", "locals", "vars", "importlib", "builtins", "setattr", "delattr",
     "breakpoint", "input", "exit", "quit"}
)

# Attributes of frames, generators, coroutines and tracebacks: each leads to some module's globals, and from
# there to its builtins (`gen.gi_frame.f_globals["__builtins__"]`).
INTROSPECTION_ATTRIBUTES = frozenset(
    {"gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "f_globals", "f_locals", "f_builtins",
     "f_back", "f_code", "tb_frame", "tb_next", "co_consts", "mro"}
)

# Builtin types whose class pattern matches the value itself: `case int(n)` binds the value, reading no attribute.
_MATCH_SELF_TYPES = frozenset(
    {"bool", "bytearray", "bytes", "dict", "float", "frozenset", "int", "list", "set", "str", "tuple"}
)

# Page capabilities that run arbitrary JS, intercept traffic, touch local files or
# reach outside the page. Generated code may keep the ones the original had.
GUARDED_ATTRIBUTES = frozenset(
    {"evaluate", "evaluate_handle", "eval_on_selector", "eval_on_selector_all",
     "add_init_script", "add_script_tag", "route", "route_from_har", "expose_function",
     "expose_binding", "set_input_files", "set_files", "request", "context", "browser", "new_page",
     "new_context", "storage_state", "sync_playwright", "set_content", "set_extra_http_headers",
     "add_style_tag", "route_web_socket", "set_http_credentials", "grant_permissions",
     "wait_for_function", "evaluate_all", "pdf", "save_as"}
)

# Playwright methods whose first argument is a selector (drag_and_drop: both).
_SELECTOR_METHODS = frozenset(
    {"click", "dblclick", "fill", "type", "press", "check", "uncheck", "set_checked",
     "select_option", "hover", "tap", "focus", "inner_text", "inner_html", "text_content",
     "get_attribute", "input_value", "is_visible", "is_hidden", "is_enabled", "is_disabled",
     "is_checked", "is_editable", "wait_for_selector", "query_selector",
     "query_selector_all", "locator", "frame_locator", "set_input_files", "dispatch_event",
     "eval_on_selector", "eval_on_selector_all", "drag_and_drop"}
)

# Actions that accept ``timeout=``; expect() matchers (to_*, not_to_*) and wait_for_*
# (except wait_for_timeout, whose argument *is* the delay) are recognised by prefix.
_TIMEOUT_METHODS = frozenset(
    {"click", "dblclick", "fill", "type", "press", "press_sequentially", "check", "uncheck",
     "set_checked", "select_option", "hover", "tap", "focus", "blur", "clear", "inner_text",
     "inner_html", "text_content", "get_attribute", "input_value", "goto", "reload",
     "go_back", "go_forward", "set_input_files", "drag_and_drop", "drag_to",
     "dispatch_event", "scroll_into_view_if_needed", "select_text", "screenshot",
     "expect_navigation", "expect_response", "expect_request", "expect_popup"}
)

_GET_BY_KINDS = {
    "get_by_role": "role",
    "get_by_text": "text",
    "get_by_label": "label",
    "get_by_placeholder": "placeholder",
    "get_by_test_id": "testid",
    "get_by_alt_text": "alt",
    "get_by_title": "title",
}


class CodeValidationError(ValueError):
    """Task code that cannot be saved; ``line`` is 1-based, or None when not tied to one."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


class PatchError(ValueError):
    """A patch operation could not find what it was asked to change."""


# --------------------------------------------------------------------------- validation


def validate_task_code(code: str) -> None:
    """Raise CodeValidationError unless ``code`` is a parseable module defining run(page, params)."""
    _validated_tree(code)


def _validated_tree(code: str) -> ast.Module:
    if len(code.encode("utf-8", "surrogatepass")) > MAX_CODE_BYTES:
        raise CodeValidationError(f"code is larger than {MAX_CODE_BYTES // 1024} KB")
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise CodeValidationError(f"syntax error: {exc.msg}", exc.lineno) from None
    except ValueError as exc:  # e.g. NUL bytes
        raise CodeValidationError(f"cannot parse code: {exc}") from None
    except (RecursionError, MemoryError):  # e.g. `1+1+…+1` thousands of terms long: the parser's stack overflows
        raise CodeValidationError("code is nested too deeply to parse") from None
    run = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
         and n.name == "run"),
        None,
    )
    if run is None:
        raise CodeValidationError("no top-level function `def run(page, params):`")
    if isinstance(run, ast.AsyncFunctionDef):
        raise CodeValidationError("`run` must be a plain `def` (Playwright sync API)", run.lineno)
    a = run.args
    required_kwonly = [k for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    if len(a.posonlyargs) + len(a.args) != 2 or a.vararg or required_kwonly:
        raise CodeValidationError(
            "`run` must take exactly two positional parameters: (page, params)", run.lineno
        )
    return tree


# --------------------------------------------------------------------------- safety gate


def check_generated_code(
    code: str,
    *,
    original: str | None,
    allowed_domains: list[str],
    max_changed_lines: int = 40,
) -> list[str]:
    """Return human-readable reasons to refuse generated ``code``; empty means safe."""
    try:
        tree = _validated_tree(code)
    except CodeValidationError as exc:
        return [str(exc)]
    original_tree = _parse_or_none(original)

    bound, bound_before = _assignments(tree), _assignments(original_tree)
    violations = [
        *_import_violations(tree),
        *_name_violations(tree, bound),
        *_goto_violations(tree, allowed_domains, original_tree, bound, bound_before),
        *_params_rewrite_violations(tree, original_tree, bound, bound_before),
        *_url_literal_violations(tree, original_tree, allowed_domains),
        *_guarded_attribute_violations(tree, original_tree),
    ]
    if original is not None:
        changed = _changed_line_count(original, code)
        if changed > max_changed_lines:
            violations.append(
                f"{changed} lines changed; at most {max_changed_lines} may change"
            )
    if original_tree is not None:
        violations += _assertion_violations(tree, original_tree)
    return violations


def _parse_or_none(code: str | None) -> ast.Module | None:
    if code is None:
        return None
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _import_violations(tree: ast.Module) -> Iterator[str]:
    # Names bound to an allowed module, by the module's dotted name. `import urllib.parse` binds `urllib`,
    # which vouches for its `parse` child only, so `urllib.request` through the same name is refused.
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in ALLOWED_IMPORTS or ALLOWED_IMPORTS[alias.name] is not None:
                    yield f"line {node.lineno}: import of `{alias.name}` is not allowed"
                elif alias.asname:
                    modules[alias.asname] = alias.name
                else:
                    modules[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                yield f"line {node.lineno}: relative import is not allowed"
                continue
            for alias in node.names:
                allowed = ALLOWED_IMPORTS.get(module, ())
                if ALLOWED_IMPORTS.get(f"{module}.{alias.name}", ()) is None:
                    modules[alias.asname or alias.name] = f"{module}.{alias.name}"
                elif allowed is None and _public_member(module, alias.name):
                    continue
                elif not (allowed and alias.name in allowed):
                    yield f"line {node.lineno}: import of `{alias.name}` from `{module}` is not allowed"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (module := _module_of(node.value, modules)) is not None:
            if ALLOWED_IMPORTS.get(f"{module}.{node.attr}", ()) is None:
                continue  # urllib.parse through `urllib`
            if ALLOWED_IMPORTS.get(module, ()) is not None or not _public_member(module, node.attr):
                yield f"line {node.lineno}: `{ast.unparse(node)}` is not allowed"


def _module_of(expr: ast.expr, modules: Mapping[str, str]) -> str | None:
    """The allowed module `expr` names (`re`, `urllib.parse`, an alias of one), or None."""
    if isinstance(expr, ast.Name):
        return modules.get(expr.id)
    if isinstance(expr, ast.Attribute) and (parent := _module_of(expr.value, modules)) is not None:
        dotted = f"{parent}.{expr.attr}"
        return dotted if ALLOWED_IMPORTS.get(dotted, ()) is None else None
    return None


def _public_member(module: str, name: str) -> bool:
    """Whether `name` is a public member of the allowed module `module` that is not itself a module."""
    if name.startswith("_"):
        return False
    return not isinstance(getattr(importlib.import_module(module), name, None), types.ModuleType)


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _refused_by_name(attr: str) -> bool:
    """Attributes that may not be read by a name the checks cannot see the object of (getattr, class patterns)."""
    return attr.startswith("_") or attr in GUARDED_ATTRIBUTES or attr in INTROSPECTION_ATTRIBUTES or attr == "goto"


def _name_violations(tree: ast.Module, bound: Mapping[str, Counter[str]]) -> Iterator[str]:
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "getattr" and id(node) not in called:
            # `g = getattr` would let g(x, "__class__") past the literal-name check below.
            yield f"line {node.lineno}: getattr may only be called directly"
        elif isinstance(node, ast.Attribute) and node.attr == "goto" and id(node) not in called:
            # `nav = page.goto` or `map(page.goto, urls)` would take its URL past the goto checks.
            yield f"line {node.lineno}: goto may only be called directly"
        elif isinstance(node, ast.Name) and (
            node.id in FORBIDDEN_NAMES or (_is_dunder(node.id) and node.id != "__name__")
        ):
            yield f"line {node.lineno}: use of `{node.id}` is not allowed"
        elif isinstance(node, ast.Attribute) and (_is_dunder(node.attr) or node.attr in INTROSPECTION_ATTRIBUTES):
            yield f"line {node.lineno}: access to `{node.attr}` is not allowed"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
        ):
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                yield f"line {node.lineno}: getattr() needs a literal attribute name"
            elif _refused_by_name(name.value):
                yield f"line {node.lineno}: getattr() of `{name.value}` is not allowed"
        elif isinstance(node, ast.MatchClass):
            # `case object(context=ctx)` reads attributes by name, with no Attribute node for the checks above.
            for attr in node.kwd_attrs:
                if _refused_by_name(attr):
                    yield f"line {node.lineno}: a class pattern reading `{attr}` is not allowed"
            # Positional sub-patterns read the attributes the class lists in `__match_args__`, which a metaclass the
            # code writes can make any name at run time. A builtin type's one sub-pattern is the value itself.
            builtin = isinstance(node.cls, ast.Name) and node.cls.id in _MATCH_SELF_TYPES and node.cls.id not in bound
            if node.patterns and not builtin:
                yield f"line {node.lineno}: positional sub-patterns are allowed only on builtin types (`case int(n)`)"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(r"\{[^{}]*[.\[]_", node.value):
            # "{0.__class__}".format(x) reaches attributes without an Attribute node.
            yield f"line {node.lineno}: format string reaching a private attribute is not allowed"
        elif isinstance(node, ast.Constant) and _is_dunder(str(node.value)) and node.value != "__main__":
            # `f_globals["__builtins__"]`, `vars(m)["__import__"]`: a dunder by key is as much a way out.
            yield f"line {node.lineno}: the string {node.value!r} is not allowed"


def _goto_violations(
    tree: ast.Module,
    allowed_domains: list[str],
    original: ast.Module | None,
    bound: dict[str, Counter[str]],
    bound_before: dict[str, Counter[str]],
) -> Iterator[str]:
    trusted = _trusted_url_parts(original, bound, bound_before)
    bindings = _simple_bindings(tree, bound)
    for node in _goto_calls(tree):
        url = _goto_target(node)
        if url is None:
            continue
        problem = _goto_url_problem(_url_segments(url), allowed_domains)
        if problem:
            yield f"line {node.lineno}: goto {problem}"
        for part in _dynamic_parts(url):
            if _is_params_value(part) or ast.unparse(part) in trusted:
                continue
            if isinstance(part, ast.Name) and _safe_url_bindings(bindings.get(part.id), allowed_domains):
                continue  # `url = params["base_url"] + "/products"` written by the heal itself
            yield (
                f"line {node.lineno}: goto to a URL built from `{_clip_source(part)}`; "
                "build it from params, as the original does"
            )


def _simple_bindings(tree: ast.Module, bound: dict[str, Counter[str]]) -> dict[str, list[ast.expr] | None]:
    """For each name, the values of its plain `name = value` assignments; None once it is bound any other way
    (a loop, a with, an argument, an augmented assignment), which the gate cannot follow."""
    values: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values.setdefault(node.targets[0].id, []).append(node.value)
    return {
        name: values.get(name, []) if len(values.get(name, [])) == sum(ways.values()) else None
        for name, ways in bound.items()
    }


def _safe_url_bindings(values: list[ast.expr] | None, allowed_domains: list[str]) -> bool:
    """Every value the name is given is a whole URL the gate accepts in a goto: it starts with params or with
    an absolute URL on the allowed domains, and the rest is literal text or params. A bare "evil" + ".test"
    is not one: it could become the host of the URL it is put into."""

    def whole_safe_url(value: ast.expr) -> bool:
        segments = _url_segments(value)
        starts_well = segments[0] is None or _is_absolute_url(segments[0])
        return (
            starts_well
            and _goto_url_problem(segments, allowed_domains) is None
            and all(_is_params_value(part) for part in _dynamic_parts(value))
        )

    return bool(values) and all(whole_safe_url(value) for value in values)


def _goto_calls(tree: ast.Module | None) -> Iterator[ast.Call]:
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "goto":
            yield node


def _goto_target(call: ast.Call) -> ast.expr | None:
    # `goto(**options)` names its URL nowhere the checks could read it: the mapping stands for the URL.
    return call.args[0] if call.args else next((k.value for k in call.keywords if k.arg in ("url", None)), None)


def _is_params_value(expr: ast.expr) -> bool:
    """`params["base_url"]`, `params.get("host")`, `params["site"]["url"]`: the task owner's values."""
    while True:
        if isinstance(expr, ast.Subscript):
            expr = expr.value
        elif (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "get"
              and len(expr.args) == 1 and not expr.keywords):
            expr = expr.func.value  # with a default, the value may be the generated code's own text
        else:
            return isinstance(expr, ast.Name) and expr.id == "params"


def _trusted_url_parts(
    original: ast.Module | None, bound: dict[str, Counter[str]], bound_before: dict[str, Counter[str]]
) -> set[str]:
    """Dynamic URL parts the original's gotos already had (`page.goto(url)`), as long as the generated code
    assigns the names they use exactly as the original does: `url = "https:/" + "/evil.test"` added before
    an unchanged `page.goto(url)` must not inherit the original's trust."""
    trusted = set()
    for call in _goto_calls(original):
        target = _goto_target(call)
        for part in _dynamic_parts(target) if target is not None else ():
            names = {n.id for n in ast.walk(part) if isinstance(n, ast.Name)}
            if all(bound.get(name) == bound_before.get(name) for name in names):
                trusted.add(ast.unparse(part))
    return trusted


def _assignments(tree: ast.Module | None) -> dict[str, Counter[str]]:
    """For each name, how it is bound (by source, without the body of a loop, with or def), so two versions can be
    compared. Every way Python binds a name counts: assignments, loops, with, comprehensions, walrus, arguments,
    `except ... as`, match captures, imports, def and class."""
    bound: dict[str, Counter[str]] = {}

    def bind(name: str, how: str) -> None:
        bound.setdefault(name, Counter())[how] += 1

    for node in ast.walk(tree) if tree is not None else ():
        site = _binding_site(node)
        if site is not None:
            for target in _binding_targets(node):
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        bind(name.id, site)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            where = getattr(node, "name", "lambda")
            arguments = [*node.args.posonlyargs, *node.args.args, node.args.vararg, *node.args.kwonlyargs, node.args.kwarg]
            for position, arg in enumerate(arguments):
                if arg is not None:
                    bind(arg.arg, f"argument {position} of {where}")
            if where != "lambda":
                bind(where, f"def {where}")
        elif isinstance(node, ast.ClassDef):
            bind(node.name, f"class {node.name}")
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bind(node.name, f"except {ast.unparse(node.type) if node.type else ''} as {node.name}")
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bind(node.name, f"match capture {ast.unparse(node)}")
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bind(node.rest, f"match capture {ast.unparse(node)}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bind((alias.asname or alias.name).split(".")[0], ast.unparse(node))
    return bound


def _binding_site(node: ast.AST) -> str | None:
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        return ast.unparse(node)
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        return f"for {ast.unparse(node.target)} in {ast.unparse(node.iter)}"
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return "with " + ", ".join(ast.unparse(item) for item in node.items)
    return None


def _binding_targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [item.optional_vars for item in node.items if item.optional_vars is not None]
    return [node.target]


def _params_rewrite_violations(
    tree: ast.Module,
    original: ast.Module | None,
    bound: dict[str, Counter[str]],
    bound_before: dict[str, Counter[str]],
) -> Iterator[str]:
    """params are the owner's values that URLs are trusted to be built from. Generated code may read them
    (`params["key"]`, `params.get("key")`) but not bind, alias, change or hand on the dict itself
    (`p = params`, `params[...] = ...`, `dict.update(params, ...)`, `for params in ...`), beyond what the
    original already does."""

    def other_uses(t: ast.Module | None, bindings: dict[str, Counter[str]]) -> Counter[str]:
        found: Counter[str] = Counter()
        if t is None:
            return found
        parents = {child: node for node in ast.walk(t) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(t):
            if not (isinstance(node, ast.Name) and node.id == "params"):
                continue
            parent = parents.get(node)
            reads = isinstance(node.ctx, ast.Load) and (
                (isinstance(parent, ast.Subscript) and parent.value is node and not _is_store_subscript(parent, parents))
                or (isinstance(parent, ast.Attribute) and parent.attr == "get" and isinstance(parents.get(parent), ast.Call))
            )
            if not reads:
                found[ast.unparse(parent) if parent is not None else "params"] += 1
        for how, n in bindings.get("params", Counter()).items():
            if how != "argument 1 of run":  # run(page, params) itself
                found[f"params bound by {how}"] += n
        return found

    for use in sorted(other_uses(tree, bound) - other_uses(original, bound_before)):
        yield f"`{use[:80]}` changes or passes on params, which generated code may not do"


def _is_store_subscript(subscript: ast.Subscript, parents: dict) -> bool:
    """`params["a"] = ...`, `params["a"]["b"] = ...`, `del params["a"]`: a write through the subscript chain."""
    node: ast.AST = subscript
    while isinstance(node, ast.Subscript):
        if not isinstance(node.ctx, ast.Load):
            return True
        node = parents.get(node)
    # A method called on a value read from params (`params["site"].update(...)`) may change it in place.
    return isinstance(node, ast.Attribute) and node.attr in _MUTATING_METHODS and isinstance(parents.get(node), ast.Call)


_MUTATING_METHODS = frozenset({"update", "setdefault", "pop", "popitem", "clear", "append", "extend", "insert",
                               "remove", "__setitem__", "__delitem__"})


def _clip_source(expr: ast.expr) -> str:
    text = ast.unparse(expr)
    return text if len(text) <= 60 else text[:57] + "..."


def _url_pieces(expr: ast.expr) -> list[str | ast.expr | None]:
    """A URL expression in order: its literal text (str), its dynamic parts (the expressions), and None for a
    literal that is not text."""
    if isinstance(expr, ast.Constant):
        return [expr.value if isinstance(expr.value, str) else None]
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _url_pieces(expr.left) + _url_pieces(expr.right)
    if isinstance(expr, ast.JoinedStr):
        return [v.value for v in expr.values]  # a Constant's text, or a FormattedValue's expression
    return [expr]


def _url_segments(expr: ast.expr) -> list[str | None]:
    """Flatten a URL expression into literal text and None for each dynamic part."""
    return [piece if isinstance(piece, str) else None for piece in _url_pieces(expr)]


def _dynamic_parts(expr: ast.expr) -> list[ast.expr]:
    """The non-literal pieces of a URL expression (the None segments of _url_segments)."""
    return [piece for piece in _url_pieces(expr) if isinstance(piece, ast.expr)]


def _goto_url_problem(segments: list[str | None], allowed_domains: list[str]) -> str | None:
    merged: list[str | None] = []
    for seg in segments:
        if isinstance(seg, str) and merged and isinstance(merged[-1], str):
            merged[-1] += seg
        else:
            merged.append(seg)
    # Dynamic parts come from params (the task owner's) and are trusted. Literal text
    # must not name a foreign host, nor extend a dynamic host (".evil.com",
    # "@evil.com") before the URL has reached its path.
    in_path = False
    for i, seg in enumerate(merged):
        if seg is None:
            continue
        absolute = _is_absolute_url(seg)
        if i == 0 and re.fullmatch(r"https?://", seg) and len(merged) > 1:
            continue  # "https://" + params["host"] + ...
        if absolute and not url_allowed(seg, allowed_domains):
            return f"to `{seg}` leaves the allowed domains"
        if i == 0:
            parts = urlsplit(seg)
            in_path = not absolute or bool(parts.path or parts.query or parts.fragment)
        elif not in_path:
            if not re.match(r"(:\d*)?([/?#]|$)", seg):
                return f"URL text `{seg}` after a dynamic part could change the host"
            in_path = bool(re.search(r"[/?#]", seg))
    return None


def _is_absolute_url(text: str) -> bool:
    text = text.lstrip()
    return bool(re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", text)) or text[:2] in {
        "//", "\\\\", "/\\", "\\/"
    }


_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def urls_in_code(code: str) -> list[str]:
    """The http(s) URLs task code names in its string literals (none when it does not parse)."""
    return [url for _, url in _literal_urls(_parse_or_none(code))]


def _literal_urls(tree: ast.Module | None) -> Iterator[tuple[int, str]]:
    """URLs in string literals, also when split across a concatenation ("https:/" + "/evil.test"), an
    f-string, a `%` format or a "".join of literals."""
    for line, text in _literal_texts(tree):
        for match in _URL_IN_TEXT.finditer(text):
            yield line, match.group()


def _literal_texts(tree: ast.Module | None) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(text := _constant_string(node), str):
            yield node.lineno, text
        elif isinstance(node, ast.JoinedStr) or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)):
            # Runs of literal text with the dynamic parts as breaks: "https:/" + "/evil.test/" + params[...].
            run = ""
            for segment in [*_url_segments(node), None]:
                if segment is None:
                    if run:
                        yield node.lineno, run
                    run = ""
                else:
                    run += segment


def _constant_string(node: ast.AST) -> str | int | float | None:
    """The text an expression of literals evaluates to ("a" + "b", "a%sb" % "x", "{}".format("x"), f"{'a'}",
    "".join(["a", "b"])), or None when any part is not a literal."""
    try:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, (str, int, float)) and not isinstance(node.value, bool) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            left = _constant_string(node.left)
            if left is None or not isinstance(left, str):
                return None
            if isinstance(node.op, ast.Add):
                right = _constant_string(node.right)
                return left + right if isinstance(right, str) else None
            values = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            constants = [_constant_string(v) for v in values]
            return None if None in constants else left % tuple(constants)
        if isinstance(node, ast.JoinedStr):
            parts = [_constant_string(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
            return None if None in parts else "".join(str(p) for p in parts)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
            owner = _constant_string(node.func.value)
            if not isinstance(owner, str):
                return None
            if node.func.attr == "format":
                args = [_constant_string(a) for a in node.args]
                return None if None in args else owner.format(*args)
            if node.func.attr == "join" and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
                items = [_constant_string(e) for e in node.args[0].elts]
                return None if not all(isinstance(i, str) for i in items) else owner.join(items)
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return None


def _url_literal_violations(
    tree: ast.Module, original: ast.Module | None, allowed_domains: list[str]
) -> Iterator[str]:
    # Catches `url = "https://evil.example"; page.goto(url)`; URLs already in the
    # original are the owner's business.
    known = {url for _, url in _literal_urls(original)}
    for line, url in _literal_urls(tree):
        if url not in known and not url_allowed(url, allowed_domains):
            yield f"line {line}: URL `{url}` is outside the allowed domains"


def _guarded_attribute_violations(tree: ast.Module, original: ast.Module | None) -> Iterator[str]:
    # Private attributes count as guarded: `page._impl_obj` reaches Playwright's internals, past every check here.
    def count(t: ast.Module | None) -> Counter[str]:
        if t is None:
            return Counter()
        return Counter(
            n.attr for n in ast.walk(t)
            if isinstance(n, ast.Attribute)
            and (n.attr in GUARDED_ATTRIBUTES or (n.attr.startswith("_") and not _is_dunder(n.attr)))
        )

    added = count(tree) - count(original)
    for attr in sorted(added):
        yield f"`.{attr}` is used {added[attr]} more time(s) than in the original"


def _changed_line_count(old: str, new: str) -> int:
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    return sum(
        max(i2 - i1, j2 - j1)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    )


def _is_expect_call(expr: ast.expr) -> bool:
    return any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Name) and n.func.id == "expect")
            or (isinstance(n.func, ast.Attribute) and n.func.attr == "expect")
        )
        for n in ast.walk(expr)
    )


def _assertions(tree: ast.Module) -> dict[tuple[str, ...], list[int]]:
    """Assertions keyed by their own dump plus the headers of every enclosing block,
    so wrapping one in `if False:` or `try/except` counts as changing it."""
    found: dict[tuple[str, ...], list[int]] = {}

    def header(node: ast.AST) -> str:
        fields = []
        for name, value in ast.iter_fields(node):
            if isinstance(value, list):
                if any(isinstance(v, ast.stmt | ast.excepthandler) for v in value):
                    continue
                value = [ast.dump(v) if isinstance(v, ast.AST) else v for v in value]
            elif isinstance(value, ast.AST):
                value = ast.dump(value)
            fields.append(f"{name}={value!r}")
        return f"{type(node).__name__}({', '.join(fields)})"

    def walk(node: ast.AST, path: tuple[str, ...]) -> None:
        for field, value in ast.iter_fields(node):
            for child in value if isinstance(value, list) else [value]:
                if not isinstance(child, ast.AST):
                    continue
                if isinstance(child, ast.Assert) or (
                    isinstance(child, ast.Expr) and _is_expect_call(child.value)
                ):
                    found.setdefault((*path, field, _dump_without_timeouts(child)), []).append(child.lineno)
                elif isinstance(child, ast.stmt | ast.excepthandler):
                    walk(child, (*path, field, header(child)))

    walk(tree, ())
    return found


def _dump_without_timeouts(node: ast.AST) -> str:
    # A longer wait before the same check is not a weaker check, and raising it is
    # exactly what set_step_timeout does to a slow expect() line.
    class Strip(ast.NodeTransformer):
        def visit_Call(self, call: ast.Call) -> ast.Call:
            self.generic_visit(call)
            call.keywords = [k for k in call.keywords if k.arg != "timeout"]
            return call

    return ast.dump(Strip().visit(copy.deepcopy(node)))


def _assertion_violations(tree: ast.Module, original: ast.Module) -> Iterator[str]:
    now = _assertions(tree)
    for key, lines in _assertions(original).items():
        missing = len(lines) - len(now.get(key, []))
        for line in lines[:missing] if missing > 0 else []:
            yield f"line {line} of the original: assertion removed or changed"


# --------------------------------------------------------------------------- patching


# A new node, or a function of the node after its children were replaced (needed when
# a replaced call contains another replaced call).
_Replacement = cst.CSTNode | Callable[[cst.CSTNode], cst.CSTNode]


@dataclass(frozen=True)
class _Source:
    module: cst.Module
    positions: Mapping[cst.CSTNode, CodeRange]
    parents: Mapping[cst.CSTNode, cst.CSTNode]

    def covering(self, line: int, kind: type[cst.CSTNode]) -> list:
        """Nodes of ``kind`` whose source range includes ``line``, in source order."""
        nodes = [
            n for n, r in self.positions.items()
            if isinstance(n, kind) and r.start.line <= line <= r.end.line
        ]
        return sorted(nodes, key=lambda n: (self.positions[n].start.line, self.positions[n].start.column))

    def apply(self, replacements: Mapping[cst.CSTNode, _Replacement]) -> str:
        return self.module.visit(_Replace(replacements)).code


class _Replace(cst.CSTTransformer):
    def __init__(self, replacements: Mapping[cst.CSTNode, _Replacement]) -> None:
        super().__init__()
        self._replacements = replacements

    def on_leave(self, original_node, updated_node):  # type: ignore[no-untyped-def]
        new = self._replacements.get(original_node, updated_node)
        return new(updated_node) if callable(new) else new


def _load(code: str) -> _Source:
    try:
        wrapper = MetadataWrapper(cst.parse_module(code))
    except cst.ParserSyntaxError as exc:
        raise PatchError(f"code does not parse: {exc.message} (line {exc.raw_line})") from None
    return _Source(
        module=wrapper.module,
        positions=wrapper.resolve(PositionProvider),
        parents=wrapper.resolve(ParentNodeProvider),
    )


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _method_calls(src: _Source, line: int) -> list[cst.Call]:
    calls = src.covering(line, cst.Call)
    return [c for c in calls if isinstance(c.func, cst.Attribute)]


def _escape(value: str, quote: str, *, braces: bool = False) -> str:
    """String-literal body for ``value`` between ``quote``s (f-string when ``braces``)."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote[0]:
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif braces and ch in "{}":
            out.append(ch * 2)
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _string(value: str, *, like: cst.SimpleString | None = None) -> cst.SimpleString:
    """A literal for ``value`` in the quote style of ``like`` (double quotes by default).

    Like ruff format, a single-character quote flips to the other one when that
    avoids escapes: '[name="q"]' rather than "[name=\\"q\\"]".
    """
    quote = like.quote if like is not None else '"'
    if len(quote) == 1 and quote in value:
        other = "'" if quote == '"' else '"'
        if other not in value:
            quote = other
    raw = like is not None and "r" in like.prefix.lower()
    if raw and not re.search(r"[\r\n]|\\$|" + re.escape(quote[0]), value):
        literal = f"r{quote}{value}{quote}"
    else:
        literal = f"{quote}{_escape(value, quote)}{quote}"
    assert ast.literal_eval(literal) == value
    return cst.SimpleString(literal)


def _literal_value(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _first_literal(node: cst.BaseExpression) -> cst.SimpleString | None:
    while isinstance(node, cst.ConcatenatedString):
        node = node.left
    return node if isinstance(node, cst.SimpleString) else None


def replace_selector(code: str, *, line: int, old_selector: str, new_selector: str) -> str:
    """Replace ``old_selector`` used on ``line`` with the Playwright selector ``new_selector``.

    A literal selector argument keeps its quote style; a ``get_by_*`` call matching
    ``old_selector`` (given as the call, or as ``role=button[name="Send"]``) becomes
    ``<receiver>.locator(new_selector)``.
    """
    src = _load(code)
    calls = _method_calls(src, line)
    replacements: dict[cst.CSTNode, _Replacement] = {}
    for call in calls:
        if call.func.attr.value not in _SELECTOR_METHODS:
            continue
        for arg in _selector_args(call):
            if _literal_value(arg.value) == old_selector:
                replacements[arg.value] = _string(new_selector, like=_first_literal(arg.value))
    if not replacements:
        wanted = _selector_key(old_selector)
        for call in calls:
            if wanted is not None and _call_key(call) == wanted:
                first = _first_literal(call.args[0].value) if call.args else None
                arg = cst.Arg(_string(new_selector, like=first))
                replacements[call] = lambda updated, arg=arg: updated.with_changes(
                    func=updated.func.with_changes(attr=cst.Name("locator")),
                    args=[arg],
                    whitespace_before_args=cst.SimpleWhitespace(""),
                )
    if not replacements:
        raise PatchError(f"selector {old_selector!r} not found on line {line}")
    return src.apply(replacements)


# Page methods that take a selector first, and whose Locator namesake takes the rest of their arguments.
_LOCATOR_NAMESAKES = frozenset(
    {"click", "dblclick", "fill", "type", "press", "check", "uncheck", "set_checked", "select_option", "hover",
     "tap", "focus", "inner_text", "inner_html", "text_content", "get_attribute", "input_value", "is_visible",
     "is_hidden", "is_enabled", "is_disabled", "is_checked", "is_editable", "set_input_files", "dispatch_event"}
)


def move_into_frame(code: str, *, line: int, old_selector: str, frame_selector: str, inner_selector: str) -> str:
    """The step on ``line`` looks for its element in the iframe ``frame_selector``, as ``inner_selector``.

    ``page.fill("#name", v)`` becomes ``page.frame_locator("#form").locator("#name").fill(v)``, and
    ``page.locator(...)`` or ``page.get_by_*(...)`` becomes ``page.frame_locator("#form").locator(...)``. A step
    already in a frame (``old_selector`` as Playwright writes it, ``#old >> internal:control=enter-frame >> #x``)
    keeps its shape: its selector in the frame is replaced (``form.locator("#name")``, ``form`` being the
    frame locator, as much as ``page.frame_locator("#form").locator("#name")``), and the frame's when it changed.
    """
    in_frame = old_selector.rsplit(ENTER_FRAME, 1) if ENTER_FRAME in old_selector else None
    if in_frame and in_frame[0] == frame_selector:
        return replace_selector(code, line=line, old_selector=in_frame[1], new_selector=inner_selector)
    src = _load(code)
    calls = _method_calls(src, line)
    if in_frame:
        return src.apply(_in_frame_replacements(calls, tuple(in_frame), (frame_selector, inner_selector), line))
    replacements: dict[cst.CSTNode, _Replacement] = {}
    wanted = _selector_key(old_selector)
    for call in calls:
        method = call.func.attr.value
        selector = next((a for a in _selector_args(call) if _literal_value(a.value) == old_selector), None)
        if method == "locator" and selector is not None or wanted is not None and _call_key(call) == wanted:
            # page.locator(old, has_text=...) keeps its options; a get_by_* call's are its selector's own
            like = _first_literal(call.args[0].value) if call.args else None
            rest = [a for a in call.args if a is not selector] if method == "locator" else []
            replacements[call] = lambda updated, like=like, rest=rest: _frame_locator(
                updated.func.value, frame_selector, inner_selector, like=like, rest=rest)
        elif method in _LOCATOR_NAMESAKES and selector is not None and not isinstance(call.func.value, cst.Call):
            like = _first_literal(selector.value)
            rest = [a for a in call.args if a is not selector and not (a.keyword and a.keyword.value == "strict")]
            replacements[call] = lambda updated, like=like, rest=rest, method=method: updated.with_changes(
                func=cst.Attribute(
                    value=_frame_locator(updated.func.value, frame_selector, inner_selector, like=like),
                    attr=cst.Name(method),
                ),
                args=_without_trailing_comma(rest),
            )
    if not replacements:
        raise PatchError(f"no step on line {line} uses {old_selector!r} in a way that can move into a frame")
    return src.apply(replacements)


def _in_frame_replacements(
    calls: list[cst.Call], old: tuple[str, str], new: tuple[str, str], line: int
) -> dict[cst.CSTNode, _Replacement]:
    """``x.frame_locator(old_frame).locator(old_inner)`` on the line, its two literals replaced by `new`'s."""
    (old_frame, old_inner), (frame_selector, inner_selector) = old, new
    replacements: dict[cst.CSTNode, _Replacement] = {}
    for call in calls:
        receiver = call.func.value
        if not (call.func.attr.value == "locator" and call.args and _literal_value(call.args[0].value) == old_inner
                and isinstance(receiver, cst.Call) and isinstance(receiver.func, cst.Attribute)
                and receiver.func.attr.value == "frame_locator" and receiver.args
                and _literal_value(receiver.args[0].value) == old_frame):
            continue
        for arg, value in ((call.args[0], inner_selector), (receiver.args[0], frame_selector)):
            replacements[arg.value] = _string(value, like=_first_literal(arg.value))
    if not replacements:
        raise PatchError(f"no frame_locator({old_frame!r}).locator({old_inner!r}) on line {line}")
    return replacements


def _frame_locator(
    receiver: cst.BaseExpression, frame_selector: str, inner_selector: str, *,
    like: cst.SimpleString | None, rest: list[cst.Arg] = (),
) -> cst.Call:
    """``receiver.frame_locator(frame_selector).locator(inner_selector, *rest)``."""
    frame = cst.Call(func=cst.Attribute(value=receiver, attr=cst.Name("frame_locator")),
                     args=[cst.Arg(_string(frame_selector, like=like))])
    args = [cst.Arg(_string(inner_selector, like=like)), *rest]
    return cst.Call(func=cst.Attribute(value=frame, attr=cst.Name("locator")), args=_without_trailing_comma(args))


def _without_trailing_comma(args: list[cst.Arg]) -> list[cst.Arg]:
    return [*args[:-1], args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)] if args else []


def select_option_by_label(code: str, *, line: int, old_value: str, label: str) -> str:
    """``select_option(..., "DE")`` on ``line`` becomes ``select_option(..., label="Germany")``.

    The value must be a literal in the call (its last positional argument, or ``value=``): one that comes
    from params names what the person running the task chose, and is theirs to change.
    """
    src = _load(code)
    replacements: dict[cst.CSTNode, _Replacement] = {}
    for call in _method_calls(src, line):
        if call.func.attr.value != "select_option":
            continue
        positional = [a for a in call.args if a.keyword is None and not a.star]
        named = [a for a in call.args if a.keyword and a.keyword.value == "value"]
        for arg in named or positional[-1:]:
            if _literal_value(arg.value) == old_value:
                replacements[arg] = arg.with_changes(
                    keyword=cst.Name("label"), value=_string(label, like=_first_literal(arg.value)),
                    equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
                )
    if not replacements:
        raise PatchError(f"no select_option with the literal value {old_value!r} on line {line}")
    return src.apply(replacements)


def _selector_args(call: cst.Call) -> list[cst.Arg]:
    positional = [a for a in call.args if a.keyword is None and not a.star]
    count = 2 if call.func.attr.value == "drag_and_drop" else 1
    keyword = [a for a in call.args if a.keyword and a.keyword.value in {"selector", "source", "target"}]
    return positional[:count] + keyword


def _ast_value(node: ast.expr) -> object:
    """A comparable value: the literal, or the expression's dump when it is not literal."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ("expr", ast.dump(node))


def _ast_key(call: ast.Call) -> tuple | None:
    method = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    kind = _GET_BY_KINDS.get(method)
    positional = list(call.args)
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    first = positional[0] if positional else keywords.pop("role" if kind == "role" else "text", None)
    if kind is None or first is None:
        return None
    options = frozenset(
        (name, _ast_value(value)) for name, value in keywords.items() if name != "exact"
    ) if kind == "role" else frozenset()
    return (kind, _ast_value(first), options)


def _call_key(call: cst.Call) -> tuple | None:
    if call.func.attr.value not in _GET_BY_KINDS:
        return None
    expr = ast.parse(_code(call), mode="eval").body
    return _ast_key(expr) if isinstance(expr, ast.Call) else None


_ENGINE = re.compile(r"(?:internal:)?(role|text|label|testid|attr)=(.*)", re.S)
_ATTR = re.compile(r"\[([\w-]+)(?:=(\"(?:[^\"\\]|\\.)*\"|[^\]]*?))?[is]?\]")


def _selector_key(selector: str) -> tuple | None:
    """The get_by_* identity of a recorded selector in call or selector-engine form."""
    text = selector.strip()
    if "get_by_" in text:
        try:
            expr = ast.parse(text, mode="eval").body
        except SyntaxError:
            return None
        return _ast_key(expr) if isinstance(expr, ast.Call) else None
    match = _ENGINE.fullmatch(text)
    if not match:
        return None
    try:
        return _engine_key(*match.groups())
    except ValueError:  # malformed quoted value
        return None


def _engine_key(engine: str, body: str) -> tuple | None:
    if engine == "role":
        role, _, rest = body.partition("[")
        attrs = {name: _attr_value(value) for name, value in _ATTR.findall("[" + rest if rest else "")}
        return ("role", role.strip(), frozenset(attrs.items()))
    if engine in {"attr", "testid"}:
        found = _ATTR.fullmatch(body.strip())
        if not found:
            return None
        name, value = found.groups()
        kind = {"placeholder": "placeholder", "alt": "alt", "title": "title",
                "data-testid": "testid"}.get(name)
        return (kind, _attr_value(value), frozenset()) if kind else None
    return (engine, _attr_value(re.sub(r"(?<=\")[is]$", "", body.strip())), frozenset())


def _attr_value(raw: str) -> object:
    raw = raw.strip()
    if raw.startswith('"'):
        return json.loads(raw)
    if raw in {"", "true", "false"}:
        return raw != "false"
    return int(raw) if raw.isdigit() else raw


def fix_shape(code: str) -> str:
    """The code with every ``timeout=`` value blanked out. Two heals whose code differs only there are the same
    fix: a timeout heal sizes its wait from how long the page took that day."""
    try:
        return cst.parse_module(code).visit(_TimeoutsBlanked()).code
    except cst.ParserSyntaxError:
        return code


class _TimeoutsBlanked(cst.CSTTransformer):
    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        if updated_node.keyword is not None and updated_node.keyword.value == "timeout":
            return updated_node.with_changes(value=cst.Name("_"))
        return updated_node


def set_step_timeout(code: str, *, line: int, timeout_ms: int) -> str:
    """Give each Playwright call on ``line`` a ``timeout=`` of at least ``timeout_ms``."""
    if timeout_ms <= 0:
        raise ValueError("timeout_ms must be positive")
    src = _load(code)
    calls = [c for c in _method_calls(src, line) if _takes_timeout(c.func.attr.value)]
    if not calls:
        raise PatchError(f"no Playwright call accepting a timeout on line {line}")
    replacements: dict[cst.CSTNode, _Replacement] = {}
    for call in calls:
        current = next((a for a in call.args if a.keyword and a.keyword.value == "timeout"), None)
        if current is None:
            keyword = _keyword("timeout", cst.Integer(str(timeout_ms)))
            replacements[call] = lambda updated, keyword=keyword: _append_arg(updated, keyword)
            continue
        source = _code(current.value)
        try:
            value, literal = ast.literal_eval(source), True
        except (ValueError, SyntaxError):
            value, literal = None, False
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (value == 0 or value >= timeout_ms):
            continue  # 0 is Playwright's "no timeout": already as patient as it gets
        # An expression (a constant, a param) stays, but never below the requested floor.
        new_value = cst.parse_expression(
            str(timeout_ms) if literal else f"max({source}, {timeout_ms})"
        )
        replacements[current.value] = new_value
    return src.apply(replacements)


def _takes_timeout(method: str) -> bool:
    return (
        method in _TIMEOUT_METHODS
        or method.startswith(("to_", "not_to_"))
        or (method.startswith("wait_for") and method != "wait_for_timeout")
    )


def _keyword(name: str, value: cst.BaseExpression) -> cst.Arg:
    return cst.Arg(
        keyword=cst.Name(name),
        value=value,
        equal=cst.AssignEqual(
            whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
        ),
    )


def _append_arg(call: cst.Call, arg: cst.Arg) -> cst.Call:
    args = list(call.args)
    if args and isinstance(args[-1].comma, cst.Comma):
        # Keep a trailing-comma, one-argument-per-line layout: the old last comma moves
        # to the new argument, the old argument gets the separator used between args.
        last = args[-1]
        separator = (
            args[-2].comma if len(args) > 1 and isinstance(args[-2].comma, cst.Comma)
            else last.comma.with_changes(whitespace_after=call.whitespace_before_args)
        )
        args[-1] = last.with_changes(comma=separator)
        arg = arg.with_changes(comma=last.comma)
    return call.with_changes(args=[*args, arg])


def replace_url(code: str, *, line: int, old_path: str, new_path: str) -> str:
    """In the goto on ``line``, replace ``old_path`` inside the URL's literal text.

    The fragment must end at a path boundary (end of the literal, ``/``, ``?`` or ``#``)
    so ``/contact`` does not rewrite ``/contacts``.
    """
    if not old_path:
        raise ValueError("old_path must not be empty")
    src = _load(code)
    gotos = [c for c in _method_calls(src, line) if c.func.attr.value == "goto"]
    if not gotos:
        raise PatchError(f"no goto call on line {line}")
    urls = [
        call.args[0] if call.args and call.args[0].keyword is None
        else next((a for a in call.args if a.keyword and a.keyword.value == "url"), None)
        for call in gotos
    ]
    replacements: dict[cst.CSTNode, _Replacement] = {}
    for old, new in _path_variants(old_path, new_path):
        for url in urls:
            for part, quote in _url_literal_parts(url.value) if url else []:
                new_part = _replace_path_in_part(part, quote, old, new)
                if new_part is not None:
                    replacements[part] = new_part
        if replacements:
            break
    else:
        raise PatchError(f"path {old_path!r} not found in the goto URL on line {line}")
    return src.apply(replacements)


def _url_literal_parts(expr: cst.BaseExpression) -> list[tuple[cst.CSTNode, str]]:
    """Literal pieces of a URL expression with their quote; skips params["..."] keys."""
    if isinstance(expr, cst.SimpleString):
        return [(expr, expr.quote)]
    if isinstance(expr, cst.FormattedString):
        quote = expr.end
        return [(p, quote) for p in expr.parts if isinstance(p, cst.FormattedStringText)]
    if isinstance(expr, cst.ConcatenatedString):
        return _url_literal_parts(expr.left) + _url_literal_parts(expr.right)
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
        return _url_literal_parts(expr.left) + _url_literal_parts(expr.right)
    return []


def _path_variants(old_path: str, new_path: str) -> Iterator[tuple[str, str]]:
    """The (old, new) fragments to look for in a URL's literal text, most specific first: the whole
    paths, then the paths without the leading segments they share. Code often builds the URL from a
    base that already holds those (``params["base_url"] + "/catalog"`` with base ``…/shop``)."""
    yield old_path, new_path
    old_segments, new_segments = old_path.split("/"), new_path.split("/")
    shared = 1  # both start with "", before the leading slash
    while shared < min(len(old_segments), len(new_segments)) - 1 and old_segments[shared] == new_segments[shared]:
        shared += 1
        yield "/" + "/".join(old_segments[shared:]), "/" + "/".join(new_segments[shared:])


def _replace_path_in_part(part: cst.CSTNode, quote: str, old: str, new: str) -> cst.CSTNode | None:
    pattern = re.compile(re.escape(old) + r"(?=$|[/?#])")
    if isinstance(part, cst.SimpleString):
        value = part.evaluated_value
        if not isinstance(value, str) or not pattern.search(value):
            return None
        return _string(pattern.sub(lambda _: new, value), like=part)
    # f-string text is raw source: compare and write escaped forms.
    escaped_old = _escape(old, quote, braces=True)
    pattern = re.compile(re.escape(escaped_old) + r"(?=$|[/?#])")
    if not pattern.search(part.value):
        return None
    return part.with_changes(value=pattern.sub(lambda _: _escape(new, quote, braces=True), part.value))


def open_menu_before(code: str, *, line: int, opener_selector: str, how: str) -> str:
    """Open the menu that now holds the step's element before the statement on ``line``: ``how`` is "hover" (a
    CSS drop-down) or "click" (a disclosure button)."""
    if how not in ("hover", "click"):
        raise ValueError("how must be hover or click")
    return _insert_before(code, line, lambda page, _params: [f"{page}.{how}({_string(opener_selector).value})"])


def choose_in_custom_select(code: str, *, line: int, old_value: str, opener_selector: str, option_selector: str) -> str:
    """``page.select_option(..., "DE")`` on ``line``, whose select a redesign redid as a drop-down of its own, becomes
    two clicks: on the control that opens the list, then on the option. The call must be a statement of its own (a
    click returns no chosen values) and name its value as a literal: one from params is the person's choice, not a
    label this fix may write down."""
    src = _load(code)
    target = _statement_at(src, line)
    call = target.body[0].value if isinstance(target, cst.SimpleStatementLine) and len(target.body) == 1 \
        and isinstance(target.body[0], cst.Expr) else None
    if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute) and call.func.attr.value == "select_option"):
        raise PatchError(f"line {line} is not a select_option statement of its own")
    positional = [a for a in call.args if a.keyword is None and not a.star]
    named = [a for a in call.args if a.keyword and a.keyword.value in ("value", "label")]
    if not any(_literal_value(arg.value) == old_value for arg in named or positional[-1:]):
        raise PatchError(f"no select_option with the literal value {old_value!r} on line {line}")
    return _insert_before_statement(src, target, lambda page, _params: [
        f"{page}.click({_string(opener_selector).value})", f"{page}.click({_string(option_selector).value})",
    ], replace=True)


def scroll_before(code: str, *, line: int, pixels: int) -> str:
    """Scroll ``pixels`` down before the statement on ``line``, whose element renders only once scrolled into view.
    With the mouse wheel, as a person scrolls (``evaluate``, which could set the position, is guarded)."""
    return _insert_before(code, line, lambda page, _params: [f"{page}.mouse.wheel(0, {int(pixels)})"])


def load_more_before(
    code: str, *, line: int, button_selector: str, selector: str, presses_max: int, batch_wait_ms: int,
) -> str:
    """Before the statement on ``line``, press ``button_selector`` (a list's "Load more") until ``selector`` finds the
    step's element, at most ``presses_max`` times, and stop once the button is gone or disabled (the whole list is on
    show). It first waits for the element or the button (a list drawn after the page loads), and after each press
    gives the element ``batch_wait_ms`` to arrive: pressing again while a batch is on its way would ask for it twice,
    or press a button about to go."""
    button, wanted = _string(button_selector).value, _string(selector).value

    def build(page: str, _params: str | None) -> list[str]:
        return [
            f"more_button = {page}.locator({button}).first  # the list shows more only when asked",
            f"{page}.locator({wanted}).or_(more_button).first.wait_for()",
            f"for pressed in range({int(presses_max)}):\n"
            f"    if {page}.locator({wanted}).count() or not (more_button.is_visible() and more_button.is_enabled()):\n"
            f"        break\n"
            f"    more_button.click()\n"
            f"    try:\n"
            f'        {page}.wait_for_selector({wanted}, state="attached", timeout={int(batch_wait_ms)})\n'
            f"    except Exception:  # not in this batch: press again\n"
            f"        pass",
        ]

    return _insert_before(code, line, build)


def insert_login_steps(
    code: str,
    *,
    line: int,
    username_selector: str,
    password_selector: str,
    submit_selector: str,
    username_key: str = "username",
    password_key: str = "password",
    login_url: str | None = None,
    base_url_param: str | None = None,
    next_selector: str | None = None,
) -> str:
    """Insert a login from ``params["secrets"]`` before the statement on ``line``.

    Only the secret *keys* are written into the code, never their values. With ``login_url`` the
    login starts by opening that page; when ``base_url_param`` is given, ``login_url`` is a path
    appended to ``params[base_url_param]`` so the code keeps working on other deployments of the site.
    With ``next_selector`` the login takes two steps: the user name, that button, then the password
    (whose field Playwright's fill waits for).
    """

    def build(page: str, params: str | None) -> list[str]:
        if params is None:
            raise PatchError(f"no params in scope on line {line} to read secrets from")
        secrets = f'{params}["secrets"]'
        opening = []
        if login_url and base_url_param:
            opening = [f"{page}.goto({params}[{_string(base_url_param).value}] + {_string(login_url).value})"]
        elif login_url:
            opening = [f"{page}.goto({_string(login_url).value})"]
        return [
            *opening,
            f"{page}.fill({_string(username_selector).value}, {secrets}[{_string(username_key).value}])",
            *([f"{page}.click({_string(next_selector).value})"] if next_selector else []),
            f"{page}.fill({_string(password_selector).value}, {secrets}[{_string(password_key).value}])",
            f"{page}.click({_string(submit_selector).value})",
            f"{page}.wait_for_load_state()",
        ]

    return _insert_before(code, line, build)


def close_whenever_shown(
    code: str, *, line: int, close_selector: str, layer_selector: str | None = None, frame_selector: str | None = None
) -> str:
    """Make the function around ``line`` close a covering banner or pop-up whenever it shows.

    Playwright's ``add_locator_handler`` runs the handler before any action that the layer would
    block, however late it appears, so it is registered once, at the top of the function (after
    its docstring and the handlers registered before), rather than guessed into place before one
    step. With ``layer_selector`` the button is looked for inside the layer only: an "OK" elsewhere
    on a later page is not clicked. With ``frame_selector`` it is in that iframe, where consent
    tools often draw their banner.
    """
    src = _load(code)
    failing = _statement_at(src, line)
    func = _enclosing_function(src, failing)
    if func is None:
        raise PatchError(f"line {line} is not inside a function")
    if not isinstance(func.body, cst.IndentedBlock):
        raise PatchError(f"the function around line {line} is written on one line")
    page = _page_and_params(func)[0]
    if not re.search(rf"\b{re.escape(page)}\b", _code(failing)):
        raise PatchError(f"the step on line {line} does not act on `{page}`, where the handler would go")
    if frame_selector:
        target = f"{page}.frame_locator({_string(frame_selector).value})"
    elif layer_selector:
        target = f"{page}.locator({_string(layer_selector).value})"
    else:
        target = page
    handler = f"{page}.add_locator_handler({target}.locator({_string(close_selector).value}), lambda button: button.click())"
    body = func.body.body
    if any(handler in _code(stmt) for stmt in body):
        raise PatchError(f"{close_selector} is already closed whenever it shows")
    # After the docstring and the handlers already there: Playwright tries handlers in the order they were
    # added, and a banner's button can only be clicked once the pop-up drawn over it is closed; that one was
    # closed, and so registered, first.
    first = 1 if len(body) > 1 and _is_docstring(body[0]) else 0
    while first < len(body) - 1 and ".add_locator_handler(" in _code(body[first]):
        first += 1
    return _insert_before_statement(src, body[first], lambda _page, _params: [handler])


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


def _insert_before(
    code: str, line: int, build: Callable[[str, str | None], list[str]]
) -> str:
    src = _load(code)
    return _insert_before_statement(src, _statement_at(src, line), build)


def _insert_before_statement(
    src: _Source, target: cst.BaseStatement, build: Callable[[str, str | None], list[str]], *, replace: bool = False
) -> str:
    """The statements `build` writes (given the names of the page and the params) before `target`, or, with
    `replace`, instead of it."""
    body_owner = src.parents[target]
    func = _enclosing_function(src, target)
    if func is None:
        raise PatchError(f"line {src.positions[target].start.line} is not inside a function")
    page, params = _page_and_params(func)
    new = [cst.parse_statement(stmt + "\n") for stmt in build(page, params)]
    # Blank lines above the target stay above the inserted block; comments stay
    # attached to the statement they describe.
    lead = list(target.leading_lines)
    split = next((i for i, el in enumerate(lead) if el.comment is not None), len(lead))
    new[0] = new[0].with_changes(leading_lines=lead if replace else lead[:split])
    body = []
    for stmt in body_owner.body:
        if stmt is target:
            body += new if replace else [*new, stmt.with_changes(leading_lines=lead[split:])]
        else:
            body.append(stmt)
    return src.apply({body_owner: body_owner.with_changes(body=body)})


def _statement_at(src: _Source, line: int) -> cst.BaseStatement:
    """The innermost statement in a block whose source starts on, or spans, ``line``."""
    candidates = [
        s for s in src.covering(line, cst.BaseStatement)
        if isinstance(src.parents.get(s), cst.Module | cst.IndentedBlock)
    ]
    if candidates:
        stmt = max(candidates, key=lambda s: src.positions[s].start.line)
        if src.positions[stmt].start.line == line or isinstance(stmt, cst.SimpleStatementLine):
            return stmt
    raise PatchError(f"no statement starts on line {line}")


def _enclosing_function(src: _Source, node: cst.CSTNode) -> cst.FunctionDef | None:
    while node is not None and not isinstance(node, cst.FunctionDef):
        node = src.parents.get(node)
    return node


def _page_and_params(func: cst.FunctionDef) -> tuple[str, str | None]:
    names = [p.name.value for p in (*func.params.posonly_params, *func.params.params)]
    page = names[0] if names else "page"
    if "params" in names:
        params = "params"
    elif func.name.value == "run" and len(names) == 2:
        params = names[1]
    else:
        params = None
    return page, params
