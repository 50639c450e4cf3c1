"""The goal template file format: building, checking, loading, applying and comparing plans.

A template is a user's goal tree made shareable: titles, descriptions, module kinds,
priorities, difficulty and structure, with target dates turned into days from the plan's
start. It carries no personal data, no progress and no ids of the creator's rows (goals are
named by local keys "n1", "n2", ... in depth-first order, parents first). The file is JSON,
`{"format": "goalport.template", "formatVersion": 1, ...}`, described by the published
JSON Schema `assets/templates/schemas/template-v1.schema.json` and validated on every load.

Pure code: rows in, documents out (and back), so the database side (`versions`, `apply`,
`catalog`), the CLI, the Dagster assets and the tests share one definition of the format.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from resources.schema import as_utc
from resources.storage_layout import catalog_version_key

FORMAT_NAME = "goalport.template"
FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "template-v1.schema.json"

CATALOG_FORMAT_NAME = "goalport.template-catalog"

# The fields of a goal that a template keeps; everything else about a goal stays home.
GOAL_FIELDS = (
    "key",
    "parentKey",
    "title",
    "description",
    "moduleKind",
    "priority",
    "difficulty",
    "targetOffsetDays",
)
# The fields a diff compares for a goal found in both versions.
COMPARED_GOAL_FIELDS = ("description", "moduleKind", "priority", "difficulty", "targetOffsetDays")
COMPARED_TEMPLATE_FIELDS = ("name", "description", "category", "tags")
# Shorter needles would refuse ordinary words ("Al", "Bo" inside titles).
MIN_PERSONAL_NEEDLE = 3


class TemplateFormatError(ValueError):
    """A template document is not valid; the message names the field path and the reason."""


class PersonalDataError(ValueError):
    """A template still contains its creator's name or e-mail address; says where."""


# ---------------------------------------------------------------- building


def build_template_document(
    goals: Sequence[Mapping[Any, Any]],  # dicts or SQLAlchemy RowMappings (keyed by name)
    *,
    selected_ids: Sequence[str],
    module_kinds: Mapping[str, str],
    template_key: str,
    version: int,
    name: str,
    description: str | None = None,
    category: str | None = None,
    tags: Sequence[str] = (),
    start: dt.date | None = None,
) -> dict:
    """A template document from the trees of the selected goals.

    `goals` are Goal rows (dicts with the app's column names) that include every goal of the
    selected trees; `module_kinds` maps Module.id to its kind. A selected goal that lies
    inside another selected goal's tree is part of that tree, not a second copy. Target
    dates become days from `start`, by default the plan's first day: the earliest creation
    date or target date of any goal in it.
    """
    by_id = {g["id"]: g for g in goals}
    missing = [gid for gid in selected_ids if gid not in by_id]
    if missing:
        raise TemplateFormatError(f"no such goals: {', '.join(missing)}")
    children: dict[str, list[Mapping[str, Any]]] = {}
    for g in goals:
        if g.get("parentGoalId"):
            children.setdefault(g["parentGoalId"], []).append(g)
    for siblings in children.values():
        siblings.sort(key=lambda g: (_as_datetime(g.get("createdAt")), g["id"]))

    selected = list(dict.fromkeys(selected_ids))
    chosen = set(selected)
    roots = [gid for gid in selected if not _has_ancestor_in(by_id, gid, chosen)]

    ordered: list[tuple[Mapping[str, Any], str | None]] = []  # (goal row, parent's goal id)
    seen: set[str] = set()

    def walk(goal: Mapping[str, Any], parent_id: str | None) -> None:
        if goal["id"] in seen:  # a cycle in bad data must not loop forever
            return
        seen.add(goal["id"])
        ordered.append((goal, parent_id))
        for child in children.get(goal["id"], ()):
            walk(child, goal["id"])

    for gid in roots:
        walk(by_id[gid], None)

    plan_start = start or _plan_start(g for g, _ in ordered)
    local_key = {g["id"]: f"n{i}" for i, (g, _) in enumerate(ordered, start=1)}
    entries = []
    for g, parent_id in ordered:
        target = g.get("targetDate")
        entries.append(
            {
                "key": local_key[g["id"]],
                "parentKey": local_key[parent_id] if parent_id else None,
                "title": g["title"],
                "description": g.get("description"),
                "moduleKind": module_kinds.get(g["moduleId"]) if g.get("moduleId") else None,
                "priority": int(g["priority"]),
                "difficulty": int(g["difficulty"]) if g.get("difficulty") is not None else None,
                "targetOffsetDays": (_as_date(target) - plan_start).days if target else None,
            }
        )
    return make_document(
        entries,
        template_key=template_key,
        version=version,
        name=name,
        description=description,
        category=category,
        tags=tags,
    )


def make_document(
    goals: Sequence[Mapping[str, Any]],
    *,
    template_key: str,
    version: int,
    name: str,
    description: str | None = None,
    category: str | None = None,
    tags: Sequence[str] = (),
) -> dict:
    """A template document around goal entries (already in the format's shape)."""
    offsets = [g["targetOffsetDays"] for g in goals if g.get("targetOffsetDays") is not None]
    return {
        "format": FORMAT_NAME,
        "formatVersion": FORMAT_VERSION,
        "templateKey": template_key,
        "version": version,
        "name": name.strip(),
        "description": (description or "").strip() or None,
        "category": (category or "").strip() or None,
        "tags": normalise_tags(tags),
        "durationDays": max(offsets) if offsets else None,
        "goals": [{f: g.get(f) for f in GOAL_FIELDS} for g in goals],
    }


def normalise_tags(tags: Sequence[str]) -> list[str]:
    """Stripped, without empties or repeats (case-insensitively), in the order given."""
    result: dict[str, str] = {}
    for tag in tags:
        clean = tag.strip()
        if clean and clean.casefold() not in result:
            result[clean.casefold()] = clean
    return list(result.values())


def _has_ancestor_in(by_id: Mapping[str, Mapping], goal_id: str, chosen: set[str]) -> bool:
    seen = {goal_id}
    parent = by_id[goal_id].get("parentGoalId")
    while parent and parent in by_id and parent not in seen:
        if parent in chosen:
            return True
        seen.add(parent)
        parent = by_id[parent].get("parentGoalId")
    return False


def _plan_start(goals: Iterator[Mapping[str, Any]]) -> dt.date:
    days = []
    for g in goals:
        if g.get("createdAt") is not None:
            days.append(_as_date(g["createdAt"]))
        if g.get("targetDate") is not None:
            days.append(_as_date(g["targetDate"]))
    return min(days) if days else dt.date(1970, 1, 1)


def _as_datetime(value: Any) -> dt.datetime:
    if value is None:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.datetime):
        return as_utc(value)
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return _as_datetime(value).astimezone(dt.UTC).date()
    return value


# ---------------------------------------------------------------- personal data


def find_personal_data(
    document: Mapping[str, Any], *, name: str | None, email: str | None
) -> list[tuple[str, str]]:
    """(field path, what was found) for every text of the document that contains the
    creator's name, e-mail address or the user part of that address, ignoring case."""
    needles = []
    if name and len(name.strip()) >= MIN_PERSONAL_NEEDLE:
        needles.append(("name", name.strip().casefold()))
    if email and email.strip():
        needles.append(("e-mail address", email.strip().casefold()))
        local = email.strip().split("@", 1)[0]
        if len(local) >= MIN_PERSONAL_NEEDLE:
            needles.append(("e-mail user name", local.casefold()))
    found = []
    for path, text in iter_texts(document):
        folded = text.casefold()
        for what, needle in needles:
            if needle in folded:
                found.append((path, what))
                break
    return found


def check_no_personal_data(
    document: Mapping[str, Any], *, name: str | None, email: str | None
) -> None:
    """Refuse (PersonalDataError) a template that contains its creator's name or e-mail."""
    found = find_personal_data(document, name=name, email=email)
    if found:
        where = "; ".join(f"{what} in {path}" for path, what in found)
        raise PersonalDataError(
            f"the template contains the creator's {where}: templates are made to be shared, "
            "so remove it from those goals or from the template's text and try again"
        )


def iter_texts(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside a JSON-like value, with its field path (`goals[2].title`)."""
    if isinstance(value, str):
        yield path or "(document)", value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from iter_texts(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from iter_texts(v, f"{path}[{i}]")


# ---------------------------------------------------------------- serialising and loading


def dump_template(document: Mapping[str, Any]) -> bytes:
    """The document as the bytes of a template file (UTF-8 JSON, stable key order)."""
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


@functools.cache
def template_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def load_template(data: bytes | str, where: str = "template file") -> dict:
    """Parse and validate a template file; TemplateFormatError says what is wrong and where."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TemplateFormatError(
                f"{where}: not UTF-8 text (byte {exc.start}); a template is a JSON file"
            ) from exc
    try:
        document = json.loads(data)
    except json.JSONDecodeError as exc:
        raise TemplateFormatError(
            f"{where}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    validate_template(document, where)
    return document


def validate_template(document: Any, where: str = "template") -> None:
    """Check a parsed document against the format, the JSON Schema and the tree rules."""
    import jsonschema

    if not isinstance(document, dict):
        raise TemplateFormatError(
            f"{where}: expected a JSON object, found {type(document).__name__}"
        )
    if document.get("format") != FORMAT_NAME:
        raise TemplateFormatError(
            f"{where}: format: expected {FORMAT_NAME!r}, found {document.get('format')!r} "
            "(this is not a goalport template file)"
        )
    version = document.get("formatVersion")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise TemplateFormatError(
            f"{where}: formatVersion: {version} was written by a newer goalport; this one reads "
            f"version {FORMAT_VERSION}"
        )
    validator_class = jsonschema.validators.validator_for(template_schema())
    validator = validator_class(template_schema())
    errors = sorted(
        validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    )
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise TemplateFormatError(
            f"{where}: {field_path(first.absolute_path)}: {first.message}{more}"
        )
    _check_tree(document["goals"], where)


def _check_tree(goals: Sequence[Mapping[str, Any]], where: str) -> None:
    seen: set[str] = set()
    for i, g in enumerate(goals):
        if g["key"] in seen:
            raise TemplateFormatError(
                f"{where}: goals[{i}].key: {g['key']!r} is used by an earlier goal; "
                "keys must be unique"
            )
        parent = g["parentKey"]
        if parent is not None and parent not in seen:
            raise TemplateFormatError(
                f"{where}: goals[{i}].parentKey: {parent!r} is not the key of an earlier goal "
                "(a parent must come before its sub-goals)"
            )
        seen.add(g["key"])


def field_path(parts: Sequence[Any]) -> str:
    """`goals[2].priority` from jsonschema's ['goals', 2, 'priority']."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


# ---------------------------------------------------------------- applying


@dataclass(frozen=True)
class PlannedGoal:
    """One goal that applying a template would create, with its real target date."""

    key: str
    parent_key: str | None
    depth: int
    title: str
    description: str | None
    module_kind: str | None
    priority: int
    difficulty: int | None
    target_date: dt.date | None


def plan_goals(
    document: Mapping[str, Any],
    *,
    start: dt.date,
    rename: str | Mapping[str, str] | None = None,
    keep_subgoals: bool = True,
    module_kind: str | None = None,
    only: Collection[str] | None = None,
) -> list[PlannedGoal]:
    """The goals a template becomes for a plan starting on `start`.

    `rename` is a new title for the template's one top-level goal, or new titles by goal
    key; `module_kind` puts every goal in that kind of module; without sub-goals only the
    top-level goals are planned; with `only` (goal keys) only those goals are, each under
    its nearest chosen ancestor (a top-level goal when none is chosen).
    """
    goals = document["goals"]
    keys = {g["key"] for g in goals}
    roots = [g["key"] for g in goals if g["parentKey"] is None]
    if isinstance(rename, str):
        if len(roots) != 1:
            raise TemplateFormatError(
                f"the template has {len(roots)} top-level goals ({', '.join(roots)}); "
                "say which to rename as KEY=TITLE"
            )
        rename = {roots[0]: rename}
    rename = dict(rename or {})
    unknown = sorted(set(rename) - keys)
    if unknown:
        raise TemplateFormatError(f"no goal with key {', '.join(unknown)} in the template")
    for key, title in rename.items():
        if not title.strip():
            raise TemplateFormatError(f"the new title of {key} is empty")

    chosen = set(only) if only is not None else None
    if chosen is not None:
        unchosen = sorted(chosen - keys)
        if unchosen:
            raise TemplateFormatError(f"no goal with key {', '.join(unchosen)} in the template")
        if not chosen:
            raise TemplateFormatError("choose at least one of the template's goals")
    depth: dict[str, int] = {}
    hangs_under: dict[str, str | None] = {}  # a goal key -> the kept goal its children go under
    planned = []
    for g in goals:
        parent = g["parentKey"] if g["parentKey"] is None else hangs_under[g["parentKey"]]
        if chosen is not None and g["key"] not in chosen:
            hangs_under[g["key"]] = parent
            continue
        hangs_under[g["key"]] = g["key"]
        depth[g["key"]] = 0 if parent is None else depth[parent] + 1
        if g["parentKey"] is not None and not keep_subgoals:
            continue
        offset = g.get("targetOffsetDays")
        planned.append(
            PlannedGoal(
                key=g["key"],
                parent_key=parent,
                depth=depth[g["key"]],
                title=rename.get(g["key"], g["title"]).strip(),
                description=g.get("description"),
                module_kind=module_kind or g.get("moduleKind"),
                priority=g["priority"],
                difficulty=g.get("difficulty"),
                target_date=start + dt.timedelta(days=offset) if offset is not None else None,
            )
        )
    return planned


# ---------------------------------------------------------------- comparing versions


@dataclass
class TemplateDiff:
    """What changed between two versions of a template, goal by structural key (the path
    of titles from the top-level goal down)."""

    from_version: int
    to_version: int
    details: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.details or self.added or self.removed or self.changed)

    def as_dict(self) -> dict:
        return {
            "fromVersion": self.from_version,
            "toVersion": self.to_version,
            "details": {k: {"from": a, "to": b} for k, (a, b) in self.details.items()},
            "added": self.added,
            "removed": self.removed,
            "changed": {
                path: {f: {"from": a, "to": b} for f, (a, b) in fields.items()}
                for path, fields in self.changed.items()
            },
        }

    def describe(self) -> list[str]:
        """Lines for people: `+ goal`, `- goal`, `~ goal: field a -> b`."""
        lines = [f"version {self.from_version} -> {self.to_version}"]
        if self.is_empty:
            return lines + ["  no changes"]
        for name, (a, b) in self.details.items():
            lines.append(f"  ~ template {name}: {_show(a)} -> {_show(b)}")
        lines += [f"  + {path}" for path in self.added]
        lines += [f"  - {path}" for path in self.removed]
        for path, fields in self.changed.items():
            changes = ", ".join(f"{f} {_show(a)} -> {_show(b)}" for f, (a, b) in fields.items())
            lines.append(f"  ~ {path}: {changes}")
        return lines


def structural_keys(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Each goal by the path of titles leading to it; repeated sibling titles get ` (2)`..."""
    path_of: dict[str, str] = {}
    result: dict[str, Mapping[str, Any]] = {}
    for g in document["goals"]:
        parent = path_of.get(g["parentKey"]) if g["parentKey"] else None
        base = f"{parent} > {g['title']}" if parent else g["title"]
        path, n = base, 1
        while path in result:
            n += 1
            path = f"{base} ({n})"
        path_of[g["key"]] = path
        result[path] = g
    return result


def diff_templates(old: Mapping[str, Any], new: Mapping[str, Any]) -> TemplateDiff:
    """Goals added, removed and changed from `old` to `new`, and changed template details."""
    diff = TemplateDiff(from_version=old["version"], to_version=new["version"])
    for name in COMPARED_TEMPLATE_FIELDS:
        if old.get(name) != new.get(name):
            diff.details[name] = (old.get(name), new.get(name))
    before, after = structural_keys(old), structural_keys(new)
    diff.added = [p for p in after if p not in before]
    diff.removed = [p for p in before if p not in after]
    for path in after:
        if path in before:
            fields = {
                f: (before[path].get(f), after[path].get(f))
                for f in COMPARED_GOAL_FIELDS
                if before[path].get(f) != after[path].get(f)
            }
            if fields:
                diff.changed[path] = fields
    return diff


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return repr(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------- the public catalog


def build_catalog_index(rows: Sequence[Mapping[str, Any]], *, generated_at: dt.datetime) -> dict:
    """The catalog index from public GoalTemplate rows (one per version, `tags` a list,
    `content` the parsed document): one entry per template with its latest version's
    details, every public version, download counts, rating, and counts per category/tag."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(row["templateKey"], []).append(row)
    entries = []
    for key, versions in by_key.items():
        versions = sorted(versions, key=lambda r: r["version"])
        latest = versions[-1]
        rating_sum = sum(r["ratingSum"] for r in versions)
        rating_count = sum(r["ratingCount"] for r in versions)
        entries.append(
            {
                "templateKey": key,
                "templateId": latest["id"],
                "name": latest["name"],
                "description": latest["description"],
                "category": latest["category"],
                "tags": list(latest["tags"]),
                "latestVersion": latest["version"],
                "goalCount": len(latest["content"]["goals"]),
                "durationDays": latest["content"].get("durationDays"),
                "downloadCount": sum(r["downloadCount"] for r in versions),
                "rating": round(rating_sum / rating_count, 2) if rating_count else None,
                "ratingCount": rating_count,
                "updatedAt": _iso(latest["updatedAt"]),
                "versions": [
                    {
                        "version": r["version"],
                        "templateId": r["id"],
                        "file": catalog_version_key(key, r["version"]),
                        "downloadCount": r["downloadCount"],
                        "publishedAt": _iso(r["createdAt"]),
                    }
                    for r in versions
                ],
            }
        )
    entries.sort(key=lambda e: (-e["downloadCount"], e["name"].casefold(), e["templateKey"]))
    return {
        "format": CATALOG_FORMAT_NAME,
        "formatVersion": 1,
        "generatedAt": _iso(generated_at),
        "templateCount": len(entries),
        "categories": _counts(e["category"] for e in entries if e["category"]),
        "tags": _counts(t for e in entries for t in e["tags"]),
        "templates": entries,
    }


def _counts(values: Iterator[str]) -> list[dict]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return [{"name": k, "templates": n} for k, n in sorted(counts.items())]


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = _as_datetime(value).astimezone(dt.UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_Entry = TypeVar("_Entry", bound=Mapping[str, Any])  # a catalog entry, as the caller holds it


def filter_templates(
    entries: Sequence[_Entry],
    *,
    category: str | None = None,
    tag: str | None = None,
    text: str | None = None,
) -> list[_Entry]:
    """Entries (with name, description, category, tags) in that category, with that tag and
    containing every word of `text` in their name, description, category or tags; all
    comparisons ignore case."""
    words = [w.casefold() for w in (text or "").split()]
    result = []
    for e in entries:
        if category and (e.get("category") or "").casefold() != category.strip().casefold():
            continue
        tags = [t.casefold() for t in e.get("tags") or ()]
        if tag and tag.strip().casefold() not in tags:
            continue
        haystack = " ".join(
            [e.get("name") or "", e.get("description") or "", e.get("category") or "", *tags]
        ).casefold()
        if all(w in haystack for w in words):
            result.append(e)
    return result
