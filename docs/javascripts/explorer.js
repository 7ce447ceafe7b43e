// The Catalog's explorer and the compare view: progressive enhancement of tables the build generated.
//
// Without JavaScript both pages are plain tables. With it, the Catalog table sorts and filters, evaluates each
// entry's trainable-parameter formula for the layer the reader types, and keeps its state in the address
// (?d_in=4096&d_out=4096&r=8&merge=1&ident=1&maxpct=0.5&sort=replicated); the compare page shows the two to four
// methods named in ?m=a,b,... . Every value comes from the page's own data attributes: no request is made.
//
// Formulas come from entries, i.e. from untrusted input, so they are never given to eval or Function: `Formula`
// below parses the same small language as adapterspec.catalog.formula (names, numbers, strings, True/False/None,
// + - * / // % **, comparisons, and/or/not, `a if c else b`, min/max/int/round/sqrt) and evaluates its tree with
// bounded numbers.
"use strict";

const Formula = (() => {
  const LIMIT = 1e18;
  const FUNCTIONS = {
    min: (...a) => Math.min(...a.map(num)),
    max: (...a) => Math.max(...a.map(num)),
    int: (a) => Math.trunc(num(a)),
    round: (a) => {  // Python rounds half to even
      const x = num(a), f = Math.floor(x), d = x - f;
      return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
    },
    sqrt: (a) => { if (num(a) < 0) throw new Error("math domain error"); return Math.sqrt(a); },
  };

  function num(v) {
    if (typeof v === "boolean") return v ? 1 : 0;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${v} is not a number`);
    if (Math.abs(v) > LIMIT) throw new Error("a value exceeds 1e18");
    return v;
  }
  const truthy = (v) => !(v === null || v === false || v === 0 || v === "");

  function tokenize(src) {
    const tokens = [];
    const re = /\s*(?:(\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|('[^'\\]*'|"[^"\\]*")|(\*\*|\/\/|==|!=|<=|>=|[-+*\/%<>(),]))/y;
    let i = 0;
    while (i < src.length) {
      if (/^\s*$/.test(src.slice(i))) break;
      re.lastIndex = i;
      const m = re.exec(src);
      if (!m) throw new Error(`unexpected character at ${i}`);
      i = re.lastIndex;
      if (m[1] !== undefined) tokens.push({ t: "num", v: Number(m[1]) });
      else if (m[2] !== undefined) tokens.push({ t: "name", v: m[2] });
      else if (m[3] !== undefined) tokens.push({ t: "str", v: m[3].slice(1, -1) });
      else tokens.push({ t: "op", v: m[4] });
    }
    return tokens;
  }

  function parse(src) {
    if (src.length > 500) throw new Error("formula too long");
    const tokens = tokenize(src);
    let k = 0, depth = 0;
    const peek = (v) => k < tokens.length && (tokens[k].t === "op" || tokens[k].t === "name") && tokens[k].v === v;
    const take = (v) => { if (peek(v)) { k++; return true; } return false; };
    const expect = (v) => { if (!take(v)) throw new Error(`expected '${v}'`); };
    const KEYWORDS = new Set(["and", "or", "not", "if", "else", "is", "in"]);

    function nest(f) {
      if (++depth > 50) throw new Error("nested too deeply");
      try { return f(); } finally { depth--; }
    }
    const expr = () => nest(ternary);
    function ternary() {
      const body = or();
      if (take("if")) {
        const test = or();
        expect("else");
        const orelse = expr();
        return { k: "if", test, body, orelse };
      }
      return body;
    }
    function or() {
      let a = and();
      while (take("or")) a = { k: "or", a, b: and() };
      return a;
    }
    function and() {
      let a = not();
      while (take("and")) a = { k: "and", a, b: not() };
      return a;
    }
    function not() {
      if (take("not")) return { k: "not", a: nest(not) };
      return comparison();
    }
    function comparison() {
      const first = additive(), ops = [], rest = [];
      for (;;) {
        let op = null;
        for (const o of ["==", "!=", "<=", ">=", "<", ">"]) if (take(o)) { op = o; break; }
        if (!op && take("is")) op = take("not") ? "is not" : "is";
        if (!op) break;
        ops.push(op);
        rest.push(additive());
      }
      return ops.length ? { k: "cmp", first, ops, rest } : first;
    }
    function additive() {
      let a = multiplicative();
      for (;;) {
        if (take("+")) a = { k: "bin", op: "+", a, b: multiplicative() };
        else if (take("-")) a = { k: "bin", op: "-", a, b: multiplicative() };
        else return a;
      }
    }
    function multiplicative() {
      let a = unary();
      for (;;) {
        let op = null;
        for (const o of ["*", "//", "/", "%"]) if (take(o)) { op = o; break; }
        if (!op) return a;
        a = { k: "bin", op, a, b: unary() };
      }
    }
    function unary() {
      if (take("-")) return { k: "neg", a: nest(unary) };
      if (take("+")) return { k: "pos", a: nest(unary) };
      return power();
    }
    function power() {
      const a = atom();
      if (take("**")) return { k: "bin", op: "**", a, b: nest(unary) };
      return a;
    }
    function atom() {
      const tok = tokens[k];
      if (!tok) throw new Error("unexpected end of formula");
      if (tok.t === "num") { k++; return { k: "const", v: tok.v }; }
      if (tok.t === "str") { k++; return { k: "const", v: tok.v }; }
      if (tok.t === "op" && tok.v === "(") { k++; const e = expr(); expect(")"); return e; }
      if (tok.t === "name" && !KEYWORDS.has(tok.v)) {
        k++;
        if (tok.v === "True" || tok.v === "False") return { k: "const", v: tok.v === "True" };
        if (tok.v === "None") return { k: "const", v: null };
        if (take("(")) {
          if (!Object.hasOwn(FUNCTIONS, tok.v)) throw new Error(`unknown function '${tok.v}'`);
          const args = [expr()];
          while (take(",")) args.push(expr());
          expect(")");
          if (args.length > 4) throw new Error("too many arguments");
          return { k: "call", f: tok.v, args };
        }
        return { k: "name", v: tok.v };
      }
      throw new Error(`unexpected '${tok.v}'`);
    }
    const tree = expr();
    if (k !== tokens.length) throw new Error(`unexpected '${tokens[k].v}'`);
    return tree;
  }

  function evaluate(node, names) {
    const ev = (n) => evaluate(n, names);
    switch (node.k) {
      case "const": return typeof node.v === "number" ? num(node.v) : node.v;
      case "name":
        if (!Object.hasOwn(names, node.v)) throw new Error(`unknown name '${node.v}'`);
        return typeof names[node.v] === "number" ? num(names[node.v]) : names[node.v];
      case "if": return truthy(ev(node.test)) ? ev(node.body) : ev(node.orelse);
      case "or": { const a = ev(node.a); return truthy(a) ? a : ev(node.b); }
      case "and": { const a = ev(node.a); return truthy(a) ? ev(node.b) : a; }
      case "not": return !truthy(ev(node.a));
      case "neg": return -num(ev(node.a));
      case "pos": return num(ev(node.a));
      case "cmp": {
        let left = ev(node.first);
        for (let i = 0; i < node.ops.length; i++) {
          const right = ev(node.rest[i]);
          const op = node.ops[i];
          const ok = op === "==" || op === "is" ? left === right
            : op === "!=" || op === "is not" ? left !== right
            : op === "<" ? num(left) < num(right) : op === "<=" ? num(left) <= num(right)
            : op === ">" ? num(left) > num(right) : num(left) >= num(right);
          if (!ok) return false;
          left = right;
        }
        return true;
      }
      case "bin": {
        const a = num(ev(node.a)), b = num(ev(node.b));
        switch (node.op) {
          case "+": return num(a + b);
          case "-": return num(a - b);
          case "*": return num(a * b);
          case "/": if (b === 0) throw new Error("division by zero"); return num(a / b);
          case "//": if (b === 0) throw new Error("division by zero"); return num(Math.floor(a / b));
          case "%": if (b === 0) throw new Error("division by zero"); return num(a - b * Math.floor(a / b));
          case "**":
            if (Math.abs(b) > 64 || (Math.abs(a) > 1 && Math.abs(b) * Math.log2(Math.abs(a)) > 62)) {
              throw new Error("a power exceeds 1e18");
            }
            return num(a ** b);
        }
        break;
      }
      case "call": return num(FUNCTIONS[node.f](...node.args.map(ev)));
    }
    throw new Error("cannot evaluate");
  }

  return { parse, evaluate: (src, names) => num(evaluate(parse(src), names)) };
})();

function json(value, fallback) {
  try { return JSON.parse(value); } catch { return fallback; }
}

// ---------------------------------------------------------------------------------------------------- the Catalog
function initExplorer(root) {
  const table = root.querySelector("table");
  const tbody = table.tBodies[0];
  const rows = [...tbody.rows];
  const params = new URLSearchParams(location.search);
  const layer = { d_in: +root.dataset.dIn, d_out: +root.dataset.dOut, r: +root.dataset.r };
  const themes = new Map();
  for (const row of rows) {
    for (const a of row.cells[1].querySelectorAll("a")) themes.set(a.getAttribute("href").split("#")[1], a.textContent);
  }
  const SORTS = {
    replicated: "score after independent results", claimed: "claimed score", params: "trainable parameters",
    acc: "peft benchmark accuracy", mem: "peak memory", name: "name", checks: "checks verified",
  };
  const FLAGS = {
    merge: ["mergeable", "mergeable"], ident: ["identity", "identity at init"], rank: ["rank", "rank bound declared"],
    peft: ["peft", "equals peft"],
  };

  const form = document.createElement("form");
  form.className = "adapterspec-controls";
  form.setAttribute("aria-label", "Filter and sort the catalog");
  form.innerHTML = `
    <fieldset><legend>Layer and budget</legend>
      <label>d<sub>in</sub> <input name="d_in" type="number" min="1" max="1000000" step="1" inputmode="numeric"></label>
      <label>d<sub>out</sub> <input name="d_out" type="number" min="1" max="1000000" step="1" inputmode="numeric"></label>
      <label>r <input name="r" type="number" min="1" max="100000" step="1" inputmode="numeric"></label>
      <label>at most <input name="maxpct" type="number" min="0" step="any" inputmode="decimal" placeholder="any"> % of the layer</label>
    </fieldset>
    <fieldset><legend>Filter</legend>
      <label>Theme <select name="theme"><option value="">any</option></select></label>
      ${Object.entries(FLAGS).map(([k, [, text]]) => `<label><input type="checkbox" name="${k}"> ${text}</label>`).join("")}
      <label><input type="checkbox" name="bench"> has a peft benchmark run</label>
      <label>score after independent results ≥ <input name="minscore" type="number" min="0" max="8" step="any" inputmode="decimal" placeholder="0"></label>
    </fieldset>
    <fieldset><legend>Order</legend>
      <label>Sort by <select name="sort">${Object.entries(SORTS).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select></label>
      <label>Direction <select name="dir"><option value="desc">high to low</option><option value="asc">low to high</option></select></label>
      <button type="reset" class="md-button">Reset</button>
    </fieldset>
    <p class="adapterspec-summary" aria-live="polite"></p>`;
  const themeSelect = form.elements.theme;
  for (const [id, title] of themes) themeSelect.add(new Option(title, id));
  // The controls fold away on a phone (open on a wider screen); the summary line says what is applied.
  const box = document.createElement("details");
  box.className = "adapterspec-controls-box";
  box.open = !matchMedia("(max-width: 44.9375em)").matches;
  const summary = document.createElement("summary");
  box.append(summary, form);
  root.prepend(box);

  // Compare: a checkbox per method, and a link to the compare page with the ticked ones.
  const compareBar = document.createElement("p");
  compareBar.className = "adapterspec-compare-bar";
  compareBar.innerHTML = `<a class="md-button md-button--primary" href="../compare/">Compare the ticked methods</a>
    <span></span>`;
  box.after(compareBar);
  for (const row of rows) {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.className = "adapterspec-pick";
    box.value = row.dataset.slug;
    box.setAttribute("aria-label", `compare ${row.dataset.name}`);
    row.cells[0].prepend(box);
  }

  const defaults = { d_in: String(layer.d_in), d_out: String(layer.d_out), r: String(layer.r), sort: "replicated",
                     dir: "desc" };
  function read() {
    for (const el of form.elements) {
      if (!el.name) continue;
      const v = params.get(el.name) ?? defaults[el.name] ?? "";
      if (el.type === "checkbox") el.checked = v === "1";
      else el.value = v;
    }
    const picked = (params.get("m") || "").split(",");
    for (const box of root.querySelectorAll(".adapterspec-pick")) box.checked = picked.includes(box.value);
  }

  function write() {
    const out = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name) continue;
      const v = el.type === "checkbox" ? (el.checked ? "1" : "") : el.value.trim();
      if (v && v !== (defaults[el.name] ?? "")) out.set(el.name, v);
    }
    const picked = [...root.querySelectorAll(".adapterspec-pick:checked")].map((b) => b.value);
    if (picked.length) out.set("m", picked.join(","));
    const query = out.toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
    const link = compareBar.querySelector("a");
    link.href = `../compare/${picked.length ? `?m=${picked.join(",")}` : ""}`;
    compareBar.querySelector("span").textContent = picked.length
      ? `${picked.length} ticked${picked.length > 4 ? " (the compare page shows the first four)" : ""}`
      : "tick two to four methods in the first column";
  }

  function count(row, d_in, d_out, r) {
    const names = { ...json(row.dataset.names, {}), d_in, d_out };
    if (row.dataset.usesR === "1") names.r = r;
    const derived = json(row.dataset.derived, {});
    if (Object.keys(derived).length) {
      const values = derived[`${d_in},${d_out}`];
      if (!values) return { n: null, why: "this size is outside the table of sizes the build measured" };
      Object.assign(names, values);
    }
    try {
      const n = Formula.evaluate(row.dataset.formula, names);
      const shown = Object.entries(names).filter(([k]) => !["d_in", "d_out"].includes(k) && row.dataset.formula.includes(k));
      return { n: Math.round(n), why: shown.map(([k, v]) => `${k} = ${v === null ? "None" : v === true ? "True" : v === false ? "False" : v}`).join(", ") };
    } catch (e) {
      return { n: null, why: String(e.message || e) };
    }
  }

  function update() {
    const d_in = Math.max(1, Math.round(+form.elements.d_in.value || layer.d_in));
    const d_out = Math.max(1, Math.round(+form.elements.d_out.value || layer.d_out));
    const r = Math.max(1, Math.round(+form.elements.r.value || layer.r));
    const maxpct = form.elements.maxpct.value === "" ? null : +form.elements.maxpct.value;
    const minscore = form.elements.minscore.value === "" ? null : +form.elements.minscore.value;
    const theme = themeSelect.value;
    let shown = 0;
    for (const row of rows) {
      const { n, why } = count(row, d_in, d_out, r);
      const pct = n === null ? null : (100 * n) / (d_in * d_out);
      row.dataset.params = n === null ? "" : String(n);
      row.dataset.pct = pct === null ? "" : String(pct);
      row.querySelector(".adapterspec-count").textContent = n === null ? "—" : n.toLocaleString("en");
      row.querySelector(".adapterspec-pct").textContent = n === null ? "not evaluable at this size"
        : `${pct.toPrecision(3).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "")}% of the layer`;
      row.querySelector(".adapterspec-names").textContent = why;
      let ok = !theme || row.dataset.themes.split(" ").includes(theme);
      for (const [k, [attr]] of Object.entries(FLAGS)) if (form.elements[k].checked && row.dataset[attr] !== "1") ok = false;
      if (form.elements.bench.checked && row.dataset.acc === "") ok = false;
      if (maxpct !== null && (pct === null || pct > maxpct)) ok = false;
      if (minscore !== null && +row.dataset.replicated < minscore) ok = false;
      row.hidden = !ok;
      shown += ok;
    }
    const key = form.elements.sort.value, dir = form.elements.dir.value === "asc" ? 1 : -1;
    const value = (row) => {
      const v = key === "params" ? row.dataset.params : row.dataset[key];
      return key === "name" ? v.toLowerCase() : v === "" ? null : +v;
    };
    const order = rows.map((row, i) => ({ row, i, v: value(row) }));
    order.sort((a, b) => {
      if (a.v === null || b.v === null) return (a.v === null) - (b.v === null) || a.i - b.i;  // unknown values last
      if (a.v < b.v) return -dir;
      if (a.v > b.v) return dir;
      return a.i - b.i;  // ties keep the default order (replicated, then claimed score)
    });
    for (const { row } of order) tbody.append(row);
    for (const th of table.tHead.rows[0].cells) {
      th.removeAttribute("aria-sort");
      if (th.dataset.key === key) th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    }
    table.caption.textContent = `${shown} of ${rows.length} methods, by ${SORTS[key]} (${dir === 1 ? "low to high" : "high to low"}); trainable parameters for one ${d_out} × ${d_in} layer at r = ${r}`;
    form.querySelector(".adapterspec-summary").textContent = `${shown} of ${rows.length} methods shown.`;
    const active = [`${d_out} × ${d_in}, r = ${r}`];
    if (theme) active.push(themes.get(theme));
    for (const [k, [, text]] of Object.entries(FLAGS)) if (form.elements[k].checked) active.push(text);
    if (form.elements.bench.checked) active.push("benchmark run");
    if (maxpct !== null) active.push(`≤ ${maxpct}%`);
    if (minscore !== null) active.push(`score ≥ ${minscore}`);
    summary.textContent = `Layer, filters and order: ${active.join(", ")}; ${shown} of ${rows.length} shown, by ${SORTS[key]}`;
    write();
  }

  // Column headings sort too.
  for (const th of table.tHead.rows[0].cells) {
    const key = th.dataset.key;
    if (!SORTS[key]) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "adapterspec-sort";
    button.textContent = th.textContent;
    button.addEventListener("click", () => {
      if (form.elements.sort.value === key) form.elements.dir.value = form.elements.dir.value === "asc" ? "desc" : "asc";
      else { form.elements.sort.value = key; form.elements.dir.value = key === "name" ? "asc" : "desc"; }
      update();
    });
    th.replaceChildren(button);
  }

  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.addEventListener("submit", (e) => { e.preventDefault(); update(); });
  form.addEventListener("reset", () => setTimeout(() => {
    for (const el of form.elements) if (el.name && defaults[el.name] !== undefined) el.value = defaults[el.name];
    update();
  }));
  root.addEventListener("change", (e) => { if (e.target.classList.contains("adapterspec-pick")) write(); });
  read();
  update();
  root.classList.add("adapterspec-enhanced");
}

// ---------------------------------------------------------------------------------------------------- compare
function initCompare(root) {
  const table = root.querySelector("table");
  const heads = [...table.tHead.rows[0].cells].slice(1);
  const methods = heads.map((th) => ({ slug: th.dataset.m, name: th.querySelector("a").textContent }));
  const known = new Set(methods.map((m) => m.slug));
  const status = root.querySelector(".adapterspec-compare-status");

  const picker = document.createElement("fieldset");
  picker.className = "adapterspec-picker";
  picker.innerHTML = "<legend>Methods to compare (two to four)</legend>";
  for (const m of methods) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = m.slug;
    label.append(box, ` ${m.name}`);
    picker.append(label);
  }
  root.prepend(picker);

  function chosen() {
    const asked = (new URLSearchParams(location.search).get("m") || "").split(",").filter((s) => known.has(s));
    const unique = [...new Set(asked)].slice(0, 4);
    return unique.length >= 1 ? unique : root.dataset.default.split(",");
  }

  function show(selection, push) {
    for (const box of picker.querySelectorAll("input")) {
      box.checked = selection.includes(box.value);
      box.disabled = !box.checked && selection.length >= 4;
    }
    for (const row of table.rows) {
      const cells = [...row.cells];
      const first = cells[0];
      for (const cell of cells.slice(1)) cell.hidden = !selection.includes(cell.dataset.m);
      // columns in the order chosen
      const bySlug = new Map(cells.slice(1).map((c) => [c.dataset.m, c]));
      let after = first;
      for (const slug of selection) {
        const cell = bySlug.get(slug);
        if (cell) { after.after(cell); after = cell; }
      }
    }
    table.style.setProperty("--columns", String(selection.length));
    const names = selection.map((s) => methods.find((m) => m.slug === s).name);
    const query = `?m=${selection.join(",")}`;
    if (push) history.replaceState(null, "", query);
    status.innerHTML = "";
    status.append(`Comparing ${names.join(", ")}${selection.length < 2 ? " (pick at least one more)" : ""}. Link to this view: `);
    const link = document.createElement("a");
    link.href = query;
    link.textContent = location.pathname + query;
    status.append(link);
  }

  picker.addEventListener("change", () => {
    const current = chosen();
    const ticked = [...picker.querySelectorAll("input:checked")].map((b) => b.value);
    const order = [...current.filter((s) => ticked.includes(s)), ...ticked.filter((s) => !current.includes(s))];
    history.replaceState(null, "", `?m=${order.join(",")}`);
    show(order, true);
  });
  show(chosen(), new URLSearchParams(location.search).has("m"));
  root.classList.add("adapterspec-enhanced");
}

function initAdapterspec() {
  const explorer = document.querySelector(".adapterspec-explorer:not(.adapterspec-enhanced)");
  if (explorer) initExplorer(explorer);
  const compare = document.querySelector(".adapterspec-compare:not(.adapterspec-enhanced)");
  if (compare) initCompare(compare);
}

if (typeof document$ !== "undefined") document$.subscribe(initAdapterspec);
else document.addEventListener("DOMContentLoaded", initAdapterspec);
