"""What user text may do to a LaTeX document: display names checked against what pdflatex
accepts, titles and identifiers beyond ASCII printed or visibly replaced, never an error.

The lists of names below were each compiled with pdflatex (T1, lmodern, amsmath, amssymb,
as the documents' preamble); the tests compile them again where pdflatex is installed."""

import concurrent.futures
import re
import shutil
import subprocess
import unicodedata
import warnings

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from symprop import Partial, cli, printing
from symprop.output import LatexError, compile_pdf
from symprop.printing import LatexCharacterWarning, check_display_name, latex, latex_escape, latex_name

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
HAS_TEX = shutil.which("pdflatex") is not None
HAS_PDFTOTEXT = shutil.which("pdftotext") is not None


@pytest.fixture(autouse=True)
def fresh_warnings():
    """Each character is named in a warning once a process: forget the ones named so far."""
    printing._WARNED.clear()
    printing._math_name.cache_clear()
    yield


# -- display names ------------------------------------------------------------------------

# plain math that pdflatex accepts alone, raised to a power and in a fraction
VALID = [
    "x", "x_1", "x^2", "x_1^2", "x^2_1", "x'", "x''", "x'^2", "x'''^2", "x_1'", "x_1'^2", "x_{1}'", "x '",
    "x_{}", "x^{}", "{x}_1", "{x_1}_2", "_1", "^2", "'x", "x^{'}", "x^2{}'", "{x^2}'", "x_1 ^2", "x_ 1", "x_ {1}",
    r"x_\alpha", r"x_\Gamma", r"x_\varepsilon", r"x_\mathbf{y}", r"x_\mathbf y", r"x_\mathtt y", r"x_\prime",
    r"x^\prime", r"x_\ell", r"x_\star", r"x_\infty", r"x_\partial", r"x_\nabla", r"x_\cdot", r"x_\top", r"x_\dagger",
    "x_(", "x_+", "x_|", "x_/", "x_*", "x_<", "x_:", "x_,", "x_.", "x_[", "x_=", "x_-",
    r"\hat{x}", r"\hat x", r"\hat\alpha", r"\hat{}", r"\hat 1", r"\hat{x}'", r"\hat x'", r"\hat x_1", r"\hat{\hat{x}}",
    r"\hat{x}_1^2", r"\bar x", r"\overline x", r"\overline{x}_1^2", r"\widehat{xy}", r"\widetilde{xy}", r"\vec x",
    r"\dot x", r"\ddot x", r"\check x", r"\breve x", r"\tilde x", r"\acute x", r"\grave x", r"\mathring x",
    r"\mathbf{x}", r"\mathbf x", r"\mathbf x'", r"\mathbf{x}_1", r"\mathbf\alpha", r"\mathrm{d}", r"\mathit{x}",
    r"\mathsf{x}", r"\mathtt x", r"\mathcal{L}", r"\mathcal L", r"\mathbb{R}", r"\mathbb{R}^n", r"\boldsymbol{\alpha}",
    r"\boldsymbol\alpha", r"\boldsymbol{x}_1", r"\boldsymbol{\hat{y}}", r"\operatorname{sgn}", r"\operatorname x",
    r"\operatorname{a_1}", r"\operatorname{sgn}'", r"\mathbf{\hat{x}}", r"\hat{\mathbf{x}}", r"\mathbf{x}^\top",
    r"x_{\hat{y}}", r"x_{\operatorname{a}}", r"x_{\boldsymbol{y}}", r"\vec{w}^{(2)}_{1}",
    r"\prime", r"\ell", r"\star", r"\ast", r"\infty", r"\partial", r"\nabla", r"\cdot", r"\circ", r"\dagger", r"\top",
    r"\bot", r"\hbar", r"\imath", r"\jmath", r"x\prime", r"a\,b", r"a\;b", r"a\!b", r"\,", r"a\,_1", r"a\,'",
    r"x_1\,_2", r"x^2\,'", "x'{}^2", r"x \alpha", r"\alpha\beta", r"\Gamma_1", r"\varpi", r"\varrho", r"\varsigma",
    r"\vartheta", r"\Upsilon", r"\Xi", r"\Omega^{(1)}", "W^{(1)}_{1,1}", "w^{(1)}_{1}", "x_{5,7}", "(x)", "[x]",
    "|x|", "x+y", "x-y", "x=y", "x/y", "x*y", "x<y", "x:y", "x.y", "x,y", "x_1x_2", "x^2y^3", "{}",
    r"\text{in}", r"x_\text{in}", r"x_{\text{in}}", r"\text{in}_1", r"\text{in}'", r"\text {in}", r"\text{}",
    r"\text{Müller}",
]

# pdflatex stops at each of these alone, and the check says why
INVALID = [
    ("x^2'", "a prime after a superscript"),
    ("x^{2}'", "a prime after a superscript"),
    ("x_1^2'", "a prime after a superscript"),
    (r"\hat{x}^2'", "a prime after a superscript"),
    ("x'^2'", "a prime after a superscript"),
    ("x'_1'", "a prime after a superscript"),
    ("x' '", "a prime after a superscript"),
    (r"x^\top'", "a prime after a superscript"),
    ("x' ^2", "a superscript after primes"),
    ("x'_1^2", "a superscript after primes"),
    ("x_1_2", "two subscripts"),
    ("x_1 _2", "two subscripts"),
    (r"\hat{x}_1_2", "two subscripts"),
    ("x^2^3", "two superscripts"),
    ("x__1", "_ is followed by _"),
    ("x^^5cinput", "^ is followed by ^"),  # TeX reads ^^5c as a backslash: x\input (never compiled here)
    ("x_'", "_ is followed by '"),
    ("x^'", "^ is followed by '"),
    ("x_", "_ has nothing after it"),
    ("x^", "^ has nothing after it"),
    ("x_}", "_ has nothing after it"),
    ("{x", "a { is not closed"),
    ("x}", "a } without its {"),
    ("x_{1}}", "a } without its {"),
    (r"x_\hat{y}", r"_\hat needs braces"),
    (r"x_\hat y", r"_\hat needs braces"),
    (r"x_\vec{y}", r"_\vec needs braces"),
    (r"x_\widehat{y}", r"_\widehat needs braces"),
    (r"x_\overline{y}", r"_\overline needs braces"),
    (r"x_\operatorname{a}", r"_\operatorname needs braces"),
    (r"x_\boldsymbol{y}", r"_\boldsymbol needs braces"),
    (r"x_\boldsymbol\alpha", r"_\boldsymbol needs braces"),
    (r"x_\,", r"_ is followed by \,"),
    (r"x_\;", r"_ is followed by \;"),
    (r"\hat", r"\hat needs an argument"),
    (r"\hat_1", r"\hat is followed by _"),
    (r"\hat^2", r"\hat is followed by ^"),
    (r"\mathbf", r"\mathbf needs an argument"),
    (r"\boldsymbol", r"\boldsymbol needs an argument"),
    (r"\operatorname", r"\operatorname needs an argument"),
    (r"\hat\mathbf{x}", r"\hat\mathbf needs braces"),
    (r"\mathbf\hat{x}", r"\mathbf\hat needs braces"),
    (r"\text{a_b}", r"\text takes plain text"),
    (r"\text{\alpha}", r"\text takes plain text"),
    (r"\text", r"\text takes plain text"),
]

# pdflatex takes these alone but not as the printer writes them: squared (SymPy appends
# ^{2} to a name without ^ of its own), or with a prime after (a function's derivative)
INVALID_POWER = ["x'_1", "x''_1", r"\hat{x}'_1", "x'_{1}"]
INVALID_DERIVATIVE = ["f^2", "f^{(1)}", "f_1^2", r"\hat{f}^2"]

# pdflatex takes these, but the check refuses them to keep its rules simple: an argument
# of an accent is one character, one symbol or a braced group
CONSERVATIVE = [r"\hat'", r"\hat\hat x"]

# not plain math: accepted, printed literally in \text{...}
LITERAL = [
    "x & y", r"\input{/etc/passwd}", r"\alphax", r"\omicron", r"\{x\}", "x!", "50%", "$x$", "\\\\", "x~y", "x#",
    r"\def\x{1}", r"\catcode", "a\tb",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_pass_and_print_as_written(name):
    assert check_display_name(name) is None
    if r"\text" not in name:  # \text's text is escaped (and braced as an argument): see UNICODE_NAMES
        assert latex_name(name) == name.strip()


@pytest.mark.parametrize("name, problem", INVALID, ids=[n for n, _ in INVALID])
def test_invalid_names_are_refused_with_the_reason(name, problem):
    found = check_display_name(name)
    assert found is not None and problem in found, found
    assert "\n" not in found
    assert latex_name(name) == r"\text{" + latex_escape(name) + "}"  # a program's own names: printed literally


@pytest.mark.parametrize("name", INVALID_POWER)
def test_names_that_cannot_be_squared_are_refused(name):
    assert "cannot be raised to a power" in check_display_name(name)
    assert latex_name(name).startswith(r"\text{")


@pytest.mark.parametrize("name", INVALID_DERIVATIVE)
def test_function_names_that_cannot_take_a_prime_are_refused(name):
    assert check_display_name(name) is None
    assert "the derivative" in check_display_name(name, function=True)


@pytest.mark.parametrize("name", CONSERVATIVE)
def test_accent_arguments_must_be_simple(name):
    assert check_display_name(name) is not None


@pytest.mark.parametrize("name", LITERAL)
def test_other_names_pass_and_print_literally(name):
    assert check_display_name(name) is None
    assert latex_name(name) == r"\text{" + latex_escape(name) + "}"


@pytest.mark.parametrize("name", ["", "  ", None, 3])
def test_an_empty_name_is_refused(name):
    assert "empty" in check_display_name(name)


# non-ASCII letters in names (identifiers are Python identifiers: α, ω_1, ŷ are fine)
UNICODE_NAMES = [
    ("α", r"\alpha"), ("ω_1", r"\omega_1"), ("αx", r"\alpha x"), ("xα", r"x\alpha"), ("ε", r"\varepsilon"),
    ("ϵ", r"\epsilon"), ("φ", r"\varphi"), ("ϕ", r"\phi"), ("Ω^{(1)}", r"\Omega^{(1)}"), ("Ο", r"\mathrm{O}"),
    ("ŷ_1", r"\hat{y}_1"), ("x\u0302", r"\hat{x}"), ("x_ŷ", r"x_{\hat{y}}"), ("î", r"\hat{\imath}"),
    ("ά_1", r"\acute{\alpha}_1"), ("café", r"caf\acute{e}"), ("x²", "x^{2}"), ("x₁₂", "x_{12}"), ("x′", "x'"),
    ("x′²", "x'^{2}"), ("ℝ^n", r"\mathbb{R}^n"), ("x_ℝ", r"x_{\mathbb{R}}"), ("∂_x", r"\partial_x"),
    ("∇_θ", r"\nabla_\theta"), ("ℓ_1", r"\ell_1"), ("µ", r"\mu"), ("x_é", r"x_{\acute{e}}"),
    (r"\text{α}", r"\text{\ensuremath{\alpha}}"), (r"x_\text{in}", r"x_{\text{in}}"), (r"\text {a--b}", r"\text{a-{}-b}"),
    ("ŋ", r"\text{ŋ}"), ("ȩx", r"\text{\c{e}}x"),
    ("变量", r"\text{\texttt{[U+53D8][U+91CF]}}"), ("x😀", r"\text{x\texttt{[U+1F600]}}"),
    ("x→y", r"\text{x\ensuremath{\to}y}"), ("w_α_1", r"\text{w\_\ensuremath{\alpha}\_1}"),
]


@pytest.mark.parametrize("name, tex", UNICODE_NAMES, ids=[n for n, _ in UNICODE_NAMES])
def test_unicode_names(name, tex):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LatexCharacterWarning)
        assert latex_name(name) == tex


@pytest.mark.filterwarnings("ignore::symprop.printing.LatexCharacterWarning")
def test_unicode_display_names_are_checked_as_their_latex():
    assert "two subscripts" in check_display_name("w_α_1")
    assert "a prime after a superscript" in check_display_name("x²′")
    assert check_display_name("ω_1") is None and check_display_name("变量") is None


def test_a_name_with_no_latex_form_warns_once():
    with pytest.warns(LatexCharacterWarning, match=r"U\+53D8"):
        latex_name("变")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        latex_name("变")  # known now: no second warning


# -- text -----------------------------------------------------------------------------------

ESCAPED = [
    ("Ω", r"\ensuremath{\Omega}"),
    ("α → β ⇒ γ", r"\ensuremath{\alpha} \ensuremath{\to} \ensuremath{\beta} \ensuremath{\Rightarrow} \ensuremath{\gamma}"),
    ("a ≤ b ≥ c ≠ d", r"a \ensuremath{\leq} b \ensuremath{\geq} c \ensuremath{\neq} d"),
    ("2 × 3 · 4 ± 1", r"2 \ensuremath{\times} 3 \ensuremath{\cdot} 4 \ensuremath{\pm} 1"),
    ("∞ ∂ ∇ ∑ ∈", r"\ensuremath{\infty} \ensuremath{\partial} \ensuremath{\nabla} \ensuremath{\sum} \ensuremath{\in}"),
    ("ΑΒΓ ο", r"AB\ensuremath{\Gamma} o"),
    ("--", "-{}-"),
    ("a---b", "a-{}-{}-b"),
    ("`x`", r"\textasciigrave{}x\textasciigrave{}"),
    ("<<a>> ,,b ''c", "<{}<a>{}> ,{},b '{}'c"),
    ("“q” ‘q’ – — … «g»", "“q” ‘q’ – — … «g»"),
    ("café naïve Gauß Łódź Ærø", "café naïve Gauß Łódź Ærø"),
    ("e\u0301", "é"),  # composed first
    ("x\u0302", r"\^{x}"),
    ("ȩ ệ", r"\c{e} \^{\d{e}}"),
    ("x² H₂O", r"x\ensuremath{^{2}} H\ensuremath{_{2}}O"),
    ("a\u200bb", r"a\hspace{0pt}b"),
    ("two\nlines\t", "two lines"),
]


@pytest.mark.parametrize("text, tex", ESCAPED, ids=[t for t, _ in ESCAPED])
def test_escape(text, tex):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these warns
        assert latex_escape(text) == tex


@pytest.mark.parametrize("text, tex, named", [
    ("😀", r"\texttt{[U+1F600]}", r"'😀' \(U\+1F600 GRINNING FACE\) has no LaTeX form"),
    ("数据", r"\texttt{[U+6570][U+636E]}", r"U\+6570 CJK"),
    ("a\x07b", "ab", r"U\+0007 is a control character: dropped"),
    ("a\x7fb", "ab", r"U\+007F is a control character"),
    ("a\u200eb", "ab", r"U\+200E LEFT-TO-RIGHT MARK is an invisible formatting character: dropped"),
    ("жук", r"\texttt{[U+0436][U+0443][U+043A]}", r"U\+0436 CYRILLIC"),
    ("\udcff", r"\texttt{[U+DCFF]}", r"U\+DCFF"),
])
def test_characters_with_no_latex_form_are_replaced_visibly_with_a_warning(text, tex, named):
    with pytest.warns(LatexCharacterWarning) as caught:
        assert latex_escape(text) == tex
    assert re.search(named, str(caught[0].message))
    assert len(caught) == len(set(text) - set("ab"))  # each character named once


# what latex_escape writes; nothing else in its output may be special to TeX
WRITTEN = re.compile(
    r"\\ensuremath\{(?:[^{}]|\{[^{}]*\})*\}|\\texttt\{(?:\[U\+[0-9A-F]{4,6}\])+\}|\\hspace\{0pt\}"
    r"|\\(?:textbackslash|textasciitilde|textasciicircum|textasciigrave)\{\}|\\[&%$#_{}]"
    r"|\\[`'^~=u.\"rHvdckb]\{[^{}]*\}|\{\}"
)


@given(st.text(max_size=40))
def test_escaped_text_has_no_active_character(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LatexCharacterWarning)
        escaped = latex_escape(text)
    rest, previous = escaped, None
    while rest != previous:  # accents nest: \^{\d{e}}
        rest, previous = WRITTEN.sub("", rest), rest
    assert not set(rest) & set("\\&%$#_{}~^`")
    assert "--" not in escaped and "<<" not in escaped and "''" not in escaped  # ligatures broken by {}
    assert not any(unicodedata.category(c) == "Cc" for c in escaped)
    escaped.encode("utf-8")  # no lone surrogate


# -- compiling ------------------------------------------------------------------------------

PREAMBLE = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage{amsmath}
\usepackage{amssymb}
\begin{document}
"""


def _compiles(path, body) -> bool:
    path.write_text(PREAMBLE + body + "\n\\end{document}\n", encoding="utf-8")
    try:
        compile_pdf(path)
    except LatexError:
        return False
    return True


def _contexts(name) -> str:
    """``name`` as the printer writes it: alone, squared, in a fraction, and its reciprocal."""
    w, E = sp.symbols("w E")
    parts = [latex_name(name), latex(w**2, {w: name}), latex(Partial(E, w), {w: name}), latex(1 / w, {w: name})]
    return " ".join(f"${p}$" for p in parts) + "\n\n"


@needs_tex
def test_every_accepted_name_compiles_where_the_printer_puts_it(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LatexCharacterWarning)
        names = VALID + LITERAL + [n for n, _ in UNICODE_NAMES] + CONSERVATIVE + INVALID_POWER
        names += [n for n, _ in INVALID if "^^" not in n]  # refused ones print literally
        body = "".join(_contexts(n) for n in names)
        body += "".join(f"${latex_name(n)}'' + f'(x)$\n\n" for n in VALID if check_display_name(n, function=True) is None)
        body += "".join(f"{latex_escape(t)} \\textbf{{{latex_escape(t)}}} $\\text{{{latex_escape(t)}}}$\n\n"
                        for t, _ in ESCAPED)
        body += latex_escape("😀 数据 жук \x07 \u200e \udcff")
    assert _compiles(tmp_path / "names.tex", body)


@needs_tex
def test_pdflatex_agrees_with_the_check(tmp_path):
    """Each refused name stops pdflatex where the check says it would (the name alone,
    squared, with a prime after); the conservative refusals compile."""
    cases = [(n, f"${n}$", False) for n, _ in INVALID if "^^" not in n]
    cases += [(n, f"${n}^{{2}}$", False) for n in INVALID_POWER] + [(n, f"${n}$", True) for n in INVALID_POWER]
    cases += [(n, f"${n}'$", False) for n in INVALID_DERIVATIVE]
    cases += [(n, f"${n}$", True) for n in CONSERVATIVE]

    def run(i):
        name, body, expected = cases[i]
        return name, body, expected, _compiles(tmp_path / f"case{i}.tex", body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(len(cases))))
    wrong = [(body, compiled) for name, body, expected, compiled in results if compiled != expected]
    assert not wrong


# -- through the command line ---------------------------------------------------------------

SPEC = """[network]
inputs = ["x"]
params = ["w"]
loss = "E"
[nodes]
E = "(w*x)**2 + w**2"
[values]
x = 1.0
w = 0.5
"""


def _solve(tmp_path, capsys, spec_text, *options):
    spec = tmp_path / "net.toml"
    spec.write_text(spec_text, encoding="utf-8")
    out = tmp_path / "net.tex"
    argv = ["solve", str(spec), *options, "-o", str(out)] + (["--pdf"] if HAS_TEX else [])
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.err, out


def _pdf_text(out) -> str | None:
    if not (HAS_TEX and HAS_PDFTOTEXT):
        return None
    shown = subprocess.run(["pdftotext", str(out.with_suffix(".pdf")), "-"], capture_output=True, text=True, check=True)
    return unicodedata.normalize("NFKC", shown.stdout)  # the Omega glyph reads as U+2126, the ohm sign


def _display(latex_text: str) -> str:
    return SPEC + "[display]\nw = '''" + latex_text + "'''\n"


@pytest.mark.parametrize("name", ["x^2'", r"\hat", r"x_\hat{y}", "{x", "x'_1", "x_1_2", r"\text{a_b}", ""])
def test_solve_refuses_a_display_name_latex_would_stop_at(tmp_path, capsys, name):
    status, err, out = _solve(tmp_path, capsys, _display(name))
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "[display] w" in lines[0], err
    assert not out.exists()


@pytest.mark.parametrize("name, shown", [
    ("x'^2", None), (r"\hat{w}_{1}'", None), ("ω_1", "ω"), (r"\text{Müller}", "Müller"),
    (r"\input{/etc/passwd}", r"\input{/etc/passwd}"), ("{x}", None), ("w → v", "→"),
])
def test_solve_compiles_a_good_display_name(tmp_path, capsys, name, shown):
    status, err, out = _solve(tmp_path, capsys, _display(name))
    assert status == 0, err
    text = _pdf_text(out)
    if text is not None and shown is not None:
        assert shown in text


def test_solve_refuses_a_function_name_its_derivative_would_break(tmp_path, capsys):
    spec = SPEC.replace('E = "(w*x)**2 + w**2"', 'E = "cube(w*x)"') + '[functions]\ncube = "u**3"\n'
    status, err, _ = _solve(tmp_path, capsys, spec + "[display]\ncube = 'c^{3}'\n")
    assert status == 2 and "[display] cube" in err and "derivative" in err
    status, err, _ = _solve(tmp_path, capsys, spec + "[display]\ncube = '{c^{3}}'\n")
    assert status == 0, err


@pytest.mark.parametrize("title, shown, warned", [
    ("Ω → ∞", ["Ω", "→", "∞"], []),
    ("a ≤ b ≥ c ≠ d × e · f ± g ∂ ∇ ∈", ["≤", "≥", "×", "±", "∂", "∇", "∈"], []),
    ("“quotes” — dashes – café Gauß", ["“quotes”", "—", "–", "café", "Gauß"], []),
    ("a -- b `c`", ["a -- b `c`"], []),
    ("smile 😀", ["smile [U+1F600]"], ["U+1F600"]),
    ("数据 text", ["[U+6570][U+636E] text"], ["U+6570", "U+636E"]),
    ("zero\u200bwidth", ["zerowidth"], []),
    ("bell\x07 tab\tend", ["bell tab end"], ["U+0007"]),
])
def test_solve_prints_any_title(tmp_path, capsys, title, shown, warned):
    status, err, out = _solve(tmp_path, capsys, SPEC, "--title", title)
    assert status == 0, err
    for code in warned:
        assert code in err
    assert len(err.strip().splitlines()) == len(warned) + HAS_TEX  # one line a character, and "wrote FILE.pdf"
    text = _pdf_text(out)
    if text is not None:
        for piece in shown:  # pdftotext spaces math symbols its own way
            assert re.sub(r"\s", "", piece) in re.sub(r"\s", "", text), text[:300]


def test_solve_with_non_ascii_identifiers(tmp_path, capsys):
    spec = """[network]
inputs = ["ξ"]
params = ["α", "ω_1", "ŷ", "变量"]
loss = "E"
[nodes]
E = "(α*ξ + ω_1*ŷ)**2 + 变量**2"
[values]
"ξ" = 1.0
"α" = 0.5
"ω_1" = 0.2
"ŷ" = 0.1
"变量" = 0.3
"""
    status, err, out = _solve(tmp_path, capsys, spec)
    assert status == 0, err
    assert "U+53D8" in err and "U+91CF" in err
    tex = out.read_text(encoding="utf-8")
    assert r"\alpha" in tex and r"\omega_1" in tex and r"\hat{y}" in tex and r"\xi" in tex
    text = _pdf_text(out)
    if text is not None:
        assert "α" in text and "ω" in text and "[U+53D8][U+91CF]" in text
