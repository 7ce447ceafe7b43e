// Render the maths that pymdownx.arithmatex (generic mode) leaves as \( … \) and \[ … \], on every page load
// (including mkdocs-material's instant navigation).
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
  })
})
