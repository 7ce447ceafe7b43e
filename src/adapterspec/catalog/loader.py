"""Load ``entries/*.yaml`` into validated `Entry` objects, or fail with errors that name file, line and field."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from adapterspec.catalog.errors import CatalogError, EntryError
from adapterspec.catalog import prose
from adapterspec.catalog.model import Entry, Theme, prose_fields

THEMES_FILE = "themes.yaml"
SCHEMA_FILE = "schema.json"
MAX_FILE_BYTES = 128 * 1024  # the largest entry is under 20 KB
MAX_DEPTH = 8  # entry -> evidence -> item -> field is 3 deep; variants -> item -> value is 4
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where available: the same result, faster

Path_ = tuple[Any, ...]


@dataclass
class LoadedEntry:
    """An entry with what is needed to point back into its file."""

    entry: Entry
    path: Path
    text: str
    lines: dict[Path_, int] = field(repr=False)
    papers: dict[str, Any] = field(default_factory=dict, repr=False)  # key -> PaperRecord, resolved by load_catalog

    @property
    def slug(self) -> str:
        return self.entry.id

    def line_of(self, *loc: Any) -> int | None:
        """1-based line of the field at ``loc`` (or of its nearest enclosing field)."""
        loc_t = tuple(loc)
        while loc_t:
            if loc_t in self.lines:
                return self.lines[loc_t]
            loc_t = loc_t[:-1]
        return None

    @property
    def pseudocode_first_line(self) -> int:
        """File line of the pseudocode's first line (the block scalar starts on the line after ``pseudocode: |``)."""
        return self.lines.get(("pseudocode", "<value>"), 1)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def error(self, message: str, *loc: Any, line: int | None = None) -> EntryError:
        return EntryError(str(self.path), message, field=_dotted(loc) if loc else None,
                          line=line or (self.line_of(*loc) if loc else None))


@dataclass
class Catalog:
    """Every entry, by slug, the theme vocabulary and the bibliography."""

    root: Path
    entries: dict[str, LoadedEntry]
    themes: dict[str, Theme]
    bibliography: Any = None  # adapterspec.catalog.bibliography.Bibliography

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_index(node: yaml.Node, loc: Path_ = ()) -> dict[Path_, int]:
    """Map every key path of a composed YAML document to its 1-based line."""
    index: dict[Path_, int] = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value)
            index.update(_line_index(value, child))
            index[child] = key.start_mark.line + 1
            if isinstance(value, yaml.ScalarNode):
                # a block scalar's text starts on the line after its indicator (`|` or `>`)
                first = value.start_mark.line + (2 if value.style in ("|", ">") else 1)
                index[(*child, "<value>")] = first
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, (*loc, i)))
    return index


def _read_yaml(path: Path, root: Path | None = None) -> tuple[Any, str, dict[Path_, int]]:
    """Parse one file into plain data, its text and the line of every field, refusing anything unbounded.

    An entry is untrusted input: before anything is built from it, the file must be a regular file inside ``root``
    (no symbolic link), at most `MAX_FILE_BYTES`, UTF-8, free of YAML anchors and aliases (an alias bomb expands
    exponentially in whatever reads the data) and nested at most `MAX_DEPTH` deep.
    """
    def fail(message: str, line: int | None = None) -> CatalogError:
        return CatalogError([EntryError(str(path), message, line=line)])

    problem = unsafe_path(path, root or path.parent)
    if problem:
        raise fail(problem)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise fail(f"file is {size:,} bytes; an entry may be at most {MAX_FILE_BYTES:,} (is something pasted twice?)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise fail(f"not UTF-8 text ({e.reason} at column {column}); save the file as UTF-8", line) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_structure(node)
            data = loader.construct_document(node)
        else:
            data = None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem_ = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        msg = f"YAML syntax error: {problem_}" + (f" ({context})" if context else "")
        raise fail(msg, mark.line + 1 if mark else None) from None
    except _Unsafe as e:
        raise fail(e.message, e.line) from None
    except RecursionError:
        raise fail(f"nested far too deeply (at most {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
    lines = _line_index(node) if node is not None else {}
    duplicates = list(_duplicate_keys(node)) if node is not None else []
    if duplicates:
        raise CatalogError([EntryError(str(path), f"duplicate key '{key}' (first on line {first}); YAML would "
                                       "silently keep only the last one", line=line)
                            for key, first, line in duplicates])
    return data, text, lines


class _Unsafe(Exception):
    def __init__(self, message: str, line: int) -> None:
        self.message, self.line = message, line


def _check_structure(node: yaml.Node) -> None:
    """Refuse aliases (a node reached twice), non-scalar keys and nesting deeper than `MAX_DEPTH`."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(node, 0)]
    while stack:
        n, depth = stack.pop()
        line = n.start_mark.line + 1
        if id(n) in seen:
            raise _Unsafe("YAML anchors and aliases (&name, *name) are not allowed in entries; write the value out",
                          line)
        seen.add(id(n))
        if depth > MAX_DEPTH:
            raise _Unsafe(f"nested more than {MAX_DEPTH} levels deep", line)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise _Unsafe("mapping keys must be plain names", key.start_mark.line + 1)
                stack.append((value, depth + 1))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in n.value)


def unsafe_path(path: Path, root: Path) -> str | None:
    """Why the build must not read ``path`` (a symbolic link, or a path that leaves ``root``), or None."""
    if path.is_symlink():
        return "symbolic links are not allowed here; commit the file itself"
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return f"resolves outside {root}"
    if not path.is_file():
        return "not a regular file"
    return None


def _duplicate_keys(node: yaml.Node):
    """(key, first line, repeated line) for every key that appears twice in one mapping."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in seen:
                yield key.value, seen[key.value], line
            seen.setdefault(key.value, line)
            yield from _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)


def _explain(err: dict[str, Any], model_fields: dict[str, Any] | None = None) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (not part of the entry format; see entries/schema.json)"
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{msg[0].lower()}{msg[1:]}; got {shown}"


def load_themes(root: Path) -> dict[str, Theme]:
    path = root / THEMES_FILE
    if not path.exists():
        raise CatalogError([EntryError(str(path), "the theme vocabulary file is missing")])
    data, _, lines = _read_yaml(path)
    if not isinstance(data, list):
        raise CatalogError([EntryError(str(path), "expected a list of themes (id, title, description)", line=1)])
    themes, errors = {}, []
    for i, item in enumerate(data):
        try:
            theme = Theme.model_validate(item)
            themes[theme.id] = theme
            errors += [EntryError(str(path), problem, field=f"[{i}].description", line=lines.get((i, "description")))
                       for problem in prose.problems(theme.description)]
        except ValidationError as e:
            for err in e.errors():
                loc = (i, *err["loc"])
                errors.append(EntryError(str(path), _explain(err), field=_dotted(loc), line=lines.get(loc)))
    if errors:
        raise CatalogError(errors)
    return themes


def load_entry(path: Path) -> LoadedEntry:
    """Parse and validate one file (no cross-entry checks)."""
    data, text, lines = _read_yaml(path)
    if not isinstance(data, dict):
        raise CatalogError([EntryError(str(path), "expected a mapping of fields (id, name, ...) at the top level",
                                       line=1)])
    try:
        entry = Entry.model_validate(data)
    except ValidationError as e:
        loaded = LoadedEntry(entry=None, path=path, text=text, lines=lines)  # type: ignore[arg-type]
        raise CatalogError([loaded.error(_explain(err), *err["loc"]) for err in e.errors()]) from None
    item = LoadedEntry(entry=entry, path=path, text=text, lines=lines)
    errors = [item.error(problem, *loc) for loc, value in prose_fields(entry) for problem in prose.problems(value)]
    if errors:
        raise CatalogError(errors)
    return item


def load_catalog(root: str | Path = "entries", bibliography: str | Path | None = None) -> Catalog:
    """Load every entry under ``root`` and check what relates entries to each other and to the code.

    Citations resolve against the bibliography: ``bibliography``, else a ``papers/`` folder beside ``root``, else the
    project's ``papers/``.

    Raises:
        CatalogError: listing every problem found, in every file.
    """
    from adapterspec.catalog.bibliography import BIBLIOGRAPHY, load_bibliography
    from adapterspec.registry import available

    root = Path(root)
    if not root.is_dir():
        raise CatalogError([EntryError(str(root), "entries directory not found (use --entries PATH)")])
    if root.is_symlink():
        raise CatalogError([EntryError(str(root), "the entries directory is a symbolic link; it must be a folder")])
    errors: list[EntryError] = [EntryError(str(p), "symbolic links are not allowed in the entries folder")
                                for p in sorted(root.iterdir()) if p.is_symlink()]
    try:
        themes = load_themes(root)
    except CatalogError as e:
        errors += e.errors
        themes = {}
    if bibliography is None:
        bibliography = root.parent / "papers" if (root.parent / "papers").is_dir() else BIBLIOGRAPHY
    try:
        bib = load_bibliography(bibliography)
    except CatalogError as e:
        errors += e.errors
        bib = None
    loaded: dict[str, LoadedEntry] = {}
    broken: set[str] = set()  # files that failed to load: already reported, so not "unknown" when referenced
    for path in sorted(root.glob("*.yml")):
        errors.append(EntryError(str(path), f"entries use the .yaml extension; rename to {path.stem}.yaml"))
    for path in sorted(root.glob("*.yaml")):
        if path.name == THEMES_FILE or path.is_symlink():
            continue
        try:
            item = load_entry(path)
        except CatalogError as e:
            errors += e.errors
            broken.add(path.stem)
            continue
        if item.slug != path.stem:
            errors.append(item.error(f"id must equal the file name '{path.stem}'", "id"))
        loaded[item.slug] = item
    modules = available()
    for item in loaded.values():
        e = item.entry
        for i, theme in enumerate(e.themes):
            if themes and theme not in themes:
                errors.append(item.error(f"unknown theme '{theme}'; valid: {', '.join(sorted(themes))}", "themes", i))
        for i, rel in enumerate(e.related):
            if rel in broken:
                continue
            if rel not in loaded:
                errors.append(item.error(f"unknown related entry '{rel}'; valid: {', '.join(sorted(loaded))}",
                                         "related", i))
            elif rel == e.id:
                errors.append(item.error("an entry cannot be related to itself", "related", i))
        if e.module_slug not in modules:
            errors.append(item.error(f"no reference module '{e.module_slug}' in adapterspec.methods; "
                                     f"available: {', '.join(modules)}", "implementation", "module"))
        for i, key in enumerate(e.papers):
            if bib is not None and key not in bib:
                errors.append(item.error(f"unknown paper '{key}': no {bib.folder}/{key}.yaml; add a record there "
                                         f"(see papers/README.md); recorded: {', '.join(sorted(bib.records))}",
                                         "papers", i))
            elif bib is not None:
                item.papers[key] = bib[key]
        for i, ev in enumerate(e.evidence):
            if ev.paper not in e.papers:
                errors.append(item.error(f"paper '{ev.paper}' is not in this entry's papers ({', '.join(e.papers)})",
                                         "evidence", i, "paper"))
    if errors:
        raise CatalogError(errors)
    return Catalog(root=root, entries=loaded, themes=themes, bibliography=bib)


def load_entries(root: str | Path = "entries") -> list[Entry]:
    """The validated entries under ``root``, sorted by id."""
    return [item.entry for item in load_catalog(root)]


def json_schema(themes: dict[str, Theme] | None = None) -> dict[str, Any]:
    """The JSON Schema of an entry file, with the theme vocabulary as an enum."""
    schema = Entry.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "adapterspec catalog entry"
    if themes:
        schema["properties"]["themes"]["items"] = {"enum": sorted(themes)}
    return schema


def schema_text(themes: dict[str, Theme] | None = None) -> str:
    return json.dumps(json_schema(themes), indent=2, ensure_ascii=False) + "\n"
