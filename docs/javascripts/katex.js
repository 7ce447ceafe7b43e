// Render the maths that the build marks up, and nothing else: pymdownx.arithmatex (generic mode) and the entries'
// prose renderer both emit <span class="arithmatex">\( … \)</span> and <div class="arithmatex">\[ … \]</div>.
// Restricting KaTeX to those elements keeps a stray "$" in prose or code from being read as maths. KaTeX's `trust`
// stays off, so \href, \url and \includegraphics in an entry's LaTeX cannot make links or requests.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
    })
  }
})
