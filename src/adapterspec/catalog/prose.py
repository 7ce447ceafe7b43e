"""Entry prose to HTML: CommonMark through markdown-it-py, raw HTML off, links allowlisted, ``$…$`` maths for KaTeX.

An entry is untrusted input, so its text never reaches Python-Markdown (whose extensions would read ``--8<--`` as a
file include and ``{ onclick=... }`` as attributes). It is rendered here, once, and the page carries the HTML:

* raw HTML is not interpreted: ``<script>`` is shown as the text ``<script>``;
* links may only be ``http``, ``https``, ``mailto`` or relative links inside the site; anything else is an error
  (`problems`), never a silently dead link; images are off, so prose cannot make a page fetch anything;
* ``$…$`` is inline maths and ``$$…$$`` display maths, emitted as ``<span class="arithmatex">\\(…\\)</span>`` (the
  markup pymdownx.arithmatex uses, which ``docs/javascripts/katex.js`` renders) with the LaTeX HTML-escaped.
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

SCHEMES = ("http", "https", "mailto")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def link_problem(url: str) -> str | None:
    """Why ``url`` may not appear in entry prose, or None if it may."""
    if any(ord(c) < 0x21 or c == "\\" for c in url):
        return "control characters, spaces and backslashes are not allowed in a link"
    m = _SCHEME.match(url)
    if m:
        if m.group(1).lower() not in SCHEMES:
            return f"the scheme '{m.group(1)}:' is not allowed (allowed: {', '.join(SCHEMES)}, or a relative link)"
        if m.group(1).lower() in ("http", "https") and not re.match(r"^https?://[^/?#]", url, re.I):
            return "an http(s) link needs a host"
        return None
    if url.startswith("//"):
        return "protocol-relative links ('//host') are not allowed; write https://"
    if ":" in re.split(r"[/?#]", url, maxsplit=1)[0]:
        return "a relative link cannot contain ':' before its first '/'"
    return None


def _math(tag: str, left: str, right: str):
    def rule(self, tokens, idx, options, env) -> str:
        return f'<{tag} class="arithmatex">{left}{html.escape(tokens[idx].content.strip())}{right}</{tag}>'
    return rule


class _Renderer:
    def __init__(self) -> None:
        self.rejected: list[tuple[str, str]] = []
        md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        md.disable("image")
        md.use(dollarmath_plugin, allow_labels=False, allow_space=False, allow_digits=False, double_inline=True)
        md.add_render_rule("math_inline", _math("span", "\\(", "\\)"))
        md.add_render_rule("math_inline_double", _math("span", "\\[", "\\]"))
        md.add_render_rule("math_block", _math("div", "\\[", "\\]"))
        md.validateLink = self._validate  # type: ignore[method-assign]
        self.md = md

    def _validate(self, url: str) -> bool:
        why = link_problem(url)
        if why:
            self.rejected.append((url, why))
        return why is None


_renderer = _Renderer()


def render_block(text: str) -> str:
    """Paragraphs, lists, emphasis, code, links and maths, as HTML."""
    return _renderer.md.render(text)


def render_inline(text: str) -> str:
    """One line of inline Markdown (a table cell, a list item), as HTML without a wrapping paragraph."""
    return _renderer.md.renderInline(text)


def problems(text: str) -> list[str]:
    """What in ``text`` would not be published as written (disallowed links); empty when all is well."""
    _renderer.rejected = []
    _renderer.md.parse(text)
    found, _renderer.rejected = _renderer.rejected, []
    return [f"link '{url[:80]}': {why}" for url, why in found]


def escape(text: str) -> str:
    """Plain text for HTML."""
    return html.escape(text, quote=True)
