// MathJax 3 for the whole site; loaded before assets/mathjax/tex-chtml.js (a copy shipped with the site).
// Math comes in two forms: \( \) and \[ \] inside pymdownx.arithmatex spans (the Markdown pages), and
// $ $ / $$ $$ inside the rendered Markdown cells of the chapter notebooks. Code (pre, code) is never typeset;
// a literal dollar sign in prose is written \$.
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
};
