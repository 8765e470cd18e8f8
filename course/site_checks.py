"""What a learner would see wrong on a page of the course site, checked in headless Chromium.

:func:`page_problems` loads a page and lists, in words, each problem: a JavaScript error in the console, an image
that did not load, math left as raw LaTeX or a TeX error, a code block running out of its column, a request to
another host. :func:`search_problems` types a word into the search box of mkdocs-material and lists what went
wrong if nothing is found. :func:`external_assets` scans built HTML and CSS for scripts, stylesheets, fonts and
images taken from another host. Used by ``tests/site/``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from course.browser import BrowserError, Page

# Waits for the images and for MathJax (when the page has it) and returns what a person would notice.
INSPECT_JS = r"""
(async () => {
  await Promise.all([...document.images].map(img => img.complete ? null :
    new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  const mathjax = !!(window.MathJax && MathJax.startup && MathJax.startup.promise);
  if (mathjax) await MathJax.startup.promise;
  const skip = 'pre, code, script, style, textarea, mjx-container, .md-search';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: node => node.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode.textContent);
  const text = texts.join(' ');
  const raw = text.match(/\$\$[^$]+\$\$|\$[^$\s][^$]*\$|\\\([^]*?\\\)|\\\[[^]*?\\\]/);
  return {
    mathjax,
    math: document.querySelectorAll('mjx-container').length,
    tex_errors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent),
    raw_math: raw ? text.slice(Math.max(0, raw.index - 40), raw.index + raw[0].length + 20) : null,
    broken_images: [...document.images].filter(img => img.naturalWidth === 0).map(img => img.src.slice(0, 120)),
    images: document.images.length,
    overflowing_code: [...document.querySelectorAll('.md-content pre')]
      .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
      .map(pre => pre.textContent.split('\n').reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 100)),
    title: document.title,
  };
})()
"""
SEARCH_RESULTS_JS = "document.querySelectorAll('.md-search-result__item').length"
SEARCH_META_JS = "document.querySelector('.md-search-result__meta')?.textContent.trim()"
SEARCH_CLEAR_JS = """(() => {
  const input = document.querySelector('.md-search__input');
  input.value = '';
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true}));
  input.focus();
})()"""
SEARCH_TIMEOUT = 15.0  # seconds: the first query waits for the search worker to load the index


def page_problems(
    page: Page, url: str, *, expect_math: bool = False, screenshot: Path | None = None
) -> list[str]:
    """Load ``url`` and return its problems in words (empty: the page is fine); optionally a screenshot."""
    page.goto(url)
    seen = page.evaluate(INSPECT_JS)
    if screenshot is not None:
        page.screenshot(screenshot)
    problems = [f"console error: {error}" for error in page.console_errors]
    problems += [f"image not loaded: {src}" for src in seen["broken_images"]]
    problems += [f"TeX error: {error}" for error in seen["tex_errors"]]
    if seen["raw_math"]:
        problems.append(f"math left as raw LaTeX (MathJax did not typeset it): …{seen['raw_math']}…")
    if expect_math and not seen["mathjax"]:
        problems.append("MathJax did not start (is assets/mathjax/ in the site and loaded from there?)")
    elif expect_math and seen["math"] == 0:
        problems.append("no typeset math on a page whose source has math")
    problems += [f"code runs out of its column: {line!r}" for line in seen["overflowing_code"]]
    origin = re.match(r"[a-z]+://[^/]+/", url).group(0)
    problems += [
        f"request to another host: {r}" for r in page.requests if not r.startswith((origin, "data:"))
    ]
    return problems


def search_problems(page: Page, term: str) -> list[str]:
    """Type ``term`` into the page's search box; a problem if there is no box or no result.

    The box is emptied and the index loaded first (material's English placeholder "Initializing search" is gone),
    then the answer awaited (the result count replaces the placeholder), so results of an earlier query are never
    taken for this one's.
    """
    if not page.evaluate("!!document.querySelector('.md-search__input')"):
        return ["no search box on the page"]
    page.evaluate(SEARCH_CLEAR_JS)
    ready = f"{SEARCH_RESULTS_JS} === 0 && (m => m && m !== 'Initializing search' && m)({SEARCH_META_JS})"
    try:
        placeholder = page.wait_for(ready, timeout=SEARCH_TIMEOUT)
    except BrowserError:
        return [
            f"the search did not get ready within {SEARCH_TIMEOUT:.0f} s (is search/search_index.json there?)"
        ]
    page.type_text(term)
    try:
        meta = page.wait_for(
            f"(m => m && m !== {placeholder!r} && m)({SEARCH_META_JS})", timeout=SEARCH_TIMEOUT
        )
    except BrowserError:
        return [
            f"search for {term!r}: no answer within {SEARCH_TIMEOUT:.0f} s (is search/search_index.json there?)"
        ]
    found = page.evaluate(SEARCH_RESULTS_JS)
    return [] if found else [f"search for {term!r} found nothing ({meta.strip()})"]


class _AssetParser(HTMLParser):
    """Collects the URLs a page loads: script/img/source/iframe/embed src, stylesheet/icon/font link href."""

    LINK_RELS = {
        "stylesheet",
        "preload",
        "modulepreload",
        "icon",
        "apple-touch-icon",
        "manifest",
        "preconnect",
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []  # text of inline <script> and <style>
        self._in_inline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "source", "iframe", "embed", "audio", "video") and values.get("src"):
            self.urls.append(values["src"])
        elif tag == "link" and self.LINK_RELS & set((values.get("rel") or "").split()):
            self.urls.append(values.get("href") or "")
        self._in_inline = tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._in_inline = False

    def handle_data(self, data: str) -> None:
        if self._in_inline:
            self.inline.append(data)


EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)
EXTERNAL_IN_CODE = re.compile(
    r"""(url\(\s*["']?|@import\s+["']?|import\(\s*["'])(https?:)?//[^"')\s]+""", re.IGNORECASE
)


def external_assets(site_dir: Path) -> list[str]:
    """``"page: url"`` for every script, stylesheet, font or image of the built site that comes from another host."""
    found = []
    for path in sorted(site_dir.rglob("*.html")):
        parser = _AssetParser()
        parser.feed(path.read_text(errors="replace"))
        where = path.relative_to(site_dir)
        found += [f"{where}: {url}" for url in parser.urls if EXTERNAL.match(url)]
        found += [f"{where}: {m.group(0)}" for text in parser.inline for m in EXTERNAL_IN_CODE.finditer(text)]
    for path in sorted(site_dir.rglob("*.css")):
        where = path.relative_to(site_dir)
        found += [
            f"{where}: {m.group(0)}" for m in EXTERNAL_IN_CODE.finditer(path.read_text(errors="replace"))
        ]
    return found
