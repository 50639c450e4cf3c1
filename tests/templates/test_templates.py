"""Goal templates: made from a real goal tree without personal data, refused when they name
their creator, validated on load, versioned, applied with shifted dates, published to a
catalog in object storage by a sensor-driven asset, and driven from the CLI.

Against a real PostgreSQL database per test (`pg_url`), storage on tmp_path and a real S3
endpoint for the catalog.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import dagster as dg
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assets.formats.common import full_name, split_full_name
from assets.templates import defs as template_assets
from assets.templates.apply import ApplyOptions, applied_templates, apply_template, preview_apply
from assets.templates.catalog import rebuild_catalog, search_catalog
from assets.templates.template_file import (
    GOAL_FIELDS,
    TemplateFormatError,
    dump_template,
    find_personal_data,
    iter_texts,
    load_template,
)
from assets.templates.versions import (
    TemplateError,
    create_template,
    create_version,
    get_template,
    import_template,
    list_templates,
    rate_template,
    template_versions,
    version_diff,
)
from pipelines.cli.main import main
from resources import schema
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from resources.storage_layout import catalog_index_key

UTC = dt.UTC


@pytest.fixture
def engine(pg_url):
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    yield engine
    engine.dispose()


def ts(day: str, hour: int = 9) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def add_user(conn, user_id: str, name: str | None, email: str) -> None:
    conn.execute(
        schema.user.insert().values(
            id=user_id,
            email=email,
            firstName=split_full_name(name)[0],
            lastName=split_full_name(name)[1],
            timezone="Europe/Lisbon",
            createdAt=ts("2023-12-01"),
            updatedAt=ts("2023-12-02"),
        )
    )


def add_module(conn, module_id: str, user_id: str, kind: str, name: str) -> None:
    conn.execute(
        schema.module.insert().values(
            id=module_id,
            userId=user_id,
            kind=kind,
            name=name,
            isActive=True,
            createdAt=ts("2023-12-01"),
        )
    )


def add_goal(conn, goal_id, user_id, title, *, parent=None, module=None, created, **values):
    row = {
        "id": goal_id,
        "userId": user_id,
        "moduleId": module,
        "parentGoalId": parent,
        "title": title,
        "description": None,
        "priority": 3,
        "difficulty": None,
        "targetDate": None,
        "isCompleted": False,
        "completedAt": None,
        "createdAt": created,
        "updatedAt": created,
    }
    row.update(values)
    conn.execute(schema.goal.insert().values(**row))


def goals_of(engine, user_id: str) -> list[dict]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.select(schema.goal).where(schema.goal.c.userId == user_id)
            ).mappings()
        ]


@pytest.fixture
def marathon(engine):
    """Ana's half-marathon plan (with progress, a completed sub-goal, settings and Bible
    notes), and Ben, who has a learning module but no fitness one."""
    with engine.begin() as conn:
        add_user(conn, "u_ana", "Ana Ivanova", "ana.ivanova@example.org")
        add_user(conn, "u_ben", "Ben Okafor", "ben@example.net")
        add_module(conn, "m_ana_fit", "u_ana", "fitness", "Ana's running")
        add_module(conn, "m_ben_learn", "u_ben", "learning", "Courses")
        add_goal(
            conn,
            "g_root",
            "u_ana",
            "Run a half marathon",
            module="m_ana_fit",
            created=ts("2024-01-10", 8),
            description="Twelve weeks from couch to 21 km.",
            priority=4,
            difficulty=3,
            targetDate=dt.date(2024, 4, 10),
        )
        add_goal(
            conn,
            "g_base",
            "u_ana",
            "Build base mileage",
            parent="g_root",
            module="m_ana_fit",
            created=ts("2024-01-12"),
            priority=3,
            difficulty=2,
            targetDate=dt.date(2024, 2, 9),
            isCompleted=True,
            completedAt=ts("2024-02-08"),
        )
        add_goal(
            conn,
            "g_3x",
            "u_ana",
            "Run 3x per week",
            parent="g_base",
            module="m_ana_fit",
            created=ts("2024-01-13"),
            priority=2,
        )
        add_goal(
            conn,
            "g_taper",
            "u_ana",
            "Taper",
            parent="g_root",
            module="m_ana_fit",
            created=ts("2024-01-20"),
            priority=5,
            difficulty=1,
            targetDate=dt.date(2024, 4, 3),
        )
        add_goal(conn, "g_other", "u_ana", "Unrelated goal", created=ts("2024-03-01"))
        conn.execute(
            schema.progress.insert().values(
                id="p_1",
                userId="u_ana",
                goalId="g_base",
                value=Decimal("42.50"),
                maxValue=Decimal("100.00"),
                notes="knee felt sore after the long run",
                recordedAt=ts("2024-02-01"),
            )
        )
    return {"author": "u_ana", "applier": "u_ben", "root": "g_root"}


# ---------------------------------------------------------------- personal data


def _personal_values(engine, user_id: str) -> set[str]:
    """Every text the database holds about the user, in every table, as it could appear."""
    values: set[str] = set()
    with engine.connect() as conn:
        for table in (*schema.APP_TABLES, *schema.OWN_TABLES_WITH_USER):
            owner = table.c.id if table is schema.user else table.c.userId
            for row in conn.execute(sa.select(table).where(owner == user_id)).mappings():
                for value in row.values():
                    if isinstance(value, str):
                        values.add(value)
                    elif isinstance(value, (dt.date, dt.datetime)):
                        values.update({value.isoformat(), str(value)})
                    elif isinstance(value, Decimal):
                        values.add(str(value))
    # the sync log's rows name the app's tables ("Goal"): no personal data
    return {v for v in values if len(v.strip()) >= 4} - set(schema.APP_TABLE_NAMES)


def _pick_rich_user(tables) -> str:
    """The named user with the deepest sub-goal tree (then the most goals)."""
    goals = tables["Goal"].to_pylist()
    parent = {g["id"]: g["parentGoalId"] for g in goals}

    def depth(gid):
        d = 0
        while parent[gid]:
            gid, d = parent[gid], d + 1
        return d

    named = set(tables["User"].filter(pc.is_valid(tables["User"]["firstName"]))["id"].to_pylist())
    score = Counter()
    deepest: dict[str, int] = {}
    for g in goals:
        score[g["userId"]] += 1
        deepest[g["userId"]] = max(deepest.get(g["userId"], 0), depth(g["id"]))
    return max(sorted(named & set(score)), key=lambda u: (deepest[u], score[u]))


def test_template_from_a_rich_goal_tree_holds_no_personal_data_or_progress(engine):
    from synthetic.load import load_population
    from synthetic.population import generate_population

    tables = generate_population(10, seed=7, heavy_every=0)
    load_population(engine, tables)
    user_id = _pick_rich_user(tables)
    source = goals_of(engine, user_id)
    assert len(source) >= 10 and sum(g["parentGoalId"] is not None for g in source) >= 3
    personal = _personal_values(engine, user_id)  # before the template's own audit row
    with engine.connect() as conn:
        user = conn.execute(sa.select(schema.user).where(schema.user.c.id == user_id)).one()
        progress_rows = conn.execute(
            sa.select(sa.func.count()).where(schema.progress.c.userId == user_id)
        ).scalar()
    assert progress_rows > 0

    roots = [g["id"] for g in source if g["parentGoalId"] is None]
    record = create_template(
        engine, user_id, roots, name="A year of habits", category="life", tags=["habits"]
    )
    document = load_template(dump_template(record.document))
    text = dump_template(document).decode().casefold()

    # Every goal of the trees, in the format's fields only (no progress, no completion).
    assert len(document["goals"]) == len(source)
    assert all(set(g) == set(GOAL_FIELDS) for g in document["goals"])
    for word in ("iscompleted", "completedat", "progress", "userid", "createdat", "moduleid"):
        assert word not in text
    # The creator's name and e-mail appear nowhere, in any case.
    assert full_name(user.firstName, user.lastName).casefold() not in text
    assert user.email.casefold() not in text
    assert user.email.split("@")[0].casefold() not in text

    # Titles and descriptions are copied by design, exactly and nothing more; the structure
    # (parent title -> child title) is the source's.
    by_id = {g["id"]: g for g in source}
    by_key = {g["key"]: g for g in document["goals"]}
    assert Counter((g["title"], g["description"], g["priority"]) for g in source) == Counter(
        (g["title"], g["description"], g["priority"]) for g in document["goals"]
    )
    assert Counter(
        (by_id[g["parentGoalId"]]["title"], g["title"]) for g in source if g["parentGoalId"]
    ) == Counter(
        (by_key[g["parentKey"]]["title"], g["title"]) for g in document["goals"] if g["parentKey"]
    )

    # Everything else holds none of what the database knows about the creator: ids of any
    # of their rows, e-mail, name, timezone, settings, progress values and notes, Bible
    # notes, work tasks, timestamps and dates.
    skeleton = copy.deepcopy(document)
    for field in ("name", "description", "category", "tags"):
        skeleton[field] = None
    for g in skeleton["goals"]:
        g["title"] = g["description"] = None
    strings = [s for _, s in iter_texts(skeleton)]
    strings += [k for g in skeleton["goals"] for k in g] + list(skeleton)
    # Module kinds are copied by design (a module named "Fitness" is no secret either).
    by_design = {g["moduleKind"] for g in document["goals"] if g["moduleKind"]}
    leaks = sorted(
        v
        for v in personal
        if v.casefold() not in by_design and any(v.casefold() in s.casefold() for s in strings)
    )
    assert leaks == []
    assert len(personal) > 50  # the comparison really covered the creator's data


def test_personal_data_check_refuses_name_email_and_email_user_name(engine, marathon):
    def attempt(**details):
        with pytest.raises(TemplateError) as caught:
            create_template(engine, "u_ana", ["g_root"], **{"name": "Half marathon", **details})
        return str(caught.value)

    message = attempt(description="Questions? Write to ANA.IVANOVA@example.org")
    assert "e-mail address in description" in message
    assert "user name in tags[1]" in attempt(tags=["running", "by Ana.Ivanova"])
    assert "name in name" in attempt(name="ana ivanova's plan")
    with engine.begin() as conn:
        conn.execute(
            schema.goal.update()
            .where(schema.goal.c.id == "g_3x")
            .values(description="Coached by Ana Ivanova")
        )
    assert "name in goals[2].description" in attempt()
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.goal_template)).scalar() == 0
        )

    assert find_personal_data({"goals": [{"title": "Run"}]}, name="Ana", email="a@b.c") == []


def test_goals_of_another_user_are_refused(engine, marathon):
    with pytest.raises(TemplateError, match="user u_ben has no goal with id g_root"):
        create_template(engine, "u_ben", ["g_root"], name="Stolen plan")


# ---------------------------------------------------------------- applying


def test_apply_reproduces_the_structure_with_dates_shifted_to_the_new_start(engine, marathon):
    record = create_template(engine, "u_ana", ["g_root"], name="Half marathon", public=True)
    offsets = {g["title"]: g["targetOffsetDays"] for g in record.document["goals"]}
    # The plan starts on its first day, 2024-01-10 (the root's creation day).
    assert offsets == {
        "Run a half marathon": 91,
        "Build base mileage": 30,
        "Run 3x per week": None,
        "Taper": 84,
    }
    options = ApplyOptions(start=dt.date(2025, 3, 1))

    plan = preview_apply(engine, record.id, "u_ben", options)
    assert [(g.key, g.title, g.target_date) for g in plan.goals] == [
        ("n1", "Run a half marathon", dt.date(2025, 5, 31)),
        ("n2", "Build base mileage", dt.date(2025, 3, 31)),
        ("n3", "Run 3x per week", None),
        ("n4", "Taper", dt.date(2025, 5, 24)),
    ]
    assert plan.modules_to_create == ["fitness"]
    assert goals_of(engine, "u_ben") == []  # a preview changes nothing
    assert get_template(engine, record.id).download_count == 0

    first = apply_template(engine, record.id, "u_ben", options)
    created = {g["id"]: g for g in goals_of(engine, "u_ben")}
    assert len(created) == 4
    by_title = {g["title"]: g for g in created.values()}
    assert {t: g["targetDate"] for t, g in by_title.items()} == {
        "Run a half marathon": dt.date(2025, 5, 31),
        "Build base mileage": dt.date(2025, 3, 31),
        "Run 3x per week": None,
        "Taper": dt.date(2025, 5, 24),
    }
    parent_title = {
        t: created[g["parentGoalId"]]["title"] if g["parentGoalId"] else None
        for t, g in by_title.items()
    }
    assert parent_title == {
        "Run a half marathon": None,
        "Build base mileage": "Run a half marathon",
        "Run 3x per week": "Build base mileage",
        "Taper": "Run a half marathon",
    }
    assert [by_title[t]["priority"] for t in ("Run a half marathon", "Taper")] == [4, 5]
    assert by_title["Build base mileage"]["difficulty"] == 2
    assert not any(g["isCompleted"] or g["completedAt"] for g in created.values())
    assert {g["id"] for g in created.values()}.isdisjoint({"g_root", "g_base", "g_3x", "g_taper"})
    with engine.connect() as conn:
        module = conn.execute(
            sa.select(schema.module).where(
                schema.module.c.id == first.module_ids_created["fitness"]
            )
        ).one()
        progress = conn.execute(
            sa.select(sa.func.count()).where(schema.progress.c.userId == "u_ben")
        ).scalar()
    assert (module.userId, module.kind, module.name) == ("u_ben", "fitness", "Fitness")
    assert {g["moduleId"] for g in created.values()} == {module.id}
    assert progress == 0
    assert get_template(engine, record.id).download_count == 1

    # Applying again makes a second, independent plan in the same (now existing) module.
    second = apply_template(engine, record.id, "u_ben", options)
    assert second.plan.modules_to_create == []
    assert len(goals_of(engine, "u_ben")) == 8
    assert set(second.goal_ids.values()).isdisjoint(first.goal_ids.values())
    assert get_template(engine, record.id).download_count == 2

    # Customised: renamed, only the top-level goal, in the learning module Ben already has.
    third = apply_template(
        engine,
        record.id,
        "u_ben",
        ApplyOptions(
            start=dt.date(2026, 1, 1),
            rename="My first half",
            module_kind="learning",
            keep_subgoals=False,
        ),
    )
    (only,) = [g for g in goals_of(engine, "u_ben") if g["id"] in third.goal_ids.values()]
    assert (only["title"], only["targetDate"], only["moduleId"], only["parentGoalId"]) == (
        "My first half",
        dt.date(2026, 4, 2),
        "m_ben_learn",
        None,
    )
    with engine.connect() as conn:
        audits = conn.execute(
            sa.select(schema.data_audit_log.c.operationType).where(
                schema.data_audit_log.c.userId == "u_ben"
            )
        ).scalars()
        refs = conn.execute(
            sa.select(schema.external_ref.c.sourceApp, sa.func.count())
            .where(schema.external_ref.c.userId == "u_ben")
            .group_by(schema.external_ref.c.sourceApp)
        ).all()
    assert sorted(audits) == ["apply", "apply", "apply"]
    assert refs == [("template", 9)]


def test_private_templates_cannot_be_applied_by_others(engine, marathon):
    record = create_template(engine, "u_ana", ["g_root"], name="Mine only")
    with pytest.raises(TemplateError, match="private to another user"):
        apply_template(engine, record.id, "u_ben", ApplyOptions(start=dt.date(2025, 1, 1)))
    assert goals_of(engine, "u_ben") == []


def test_a_failed_apply_creates_nothing(engine, marathon):
    record = create_template(engine, "u_ana", ["g_root", "g_other"], name="Two trees", public=True)
    with pytest.raises(TemplateError, match="2 top-level goals"):
        apply_template(
            engine, record.id, "u_ben", ApplyOptions(start=dt.date(2025, 1, 1), rename="X")
        )
    assert goals_of(engine, "u_ben") == []
    assert get_template(engine, record.id).download_count == 0


# ---------------------------------------------------------------- the file format


def _valid_document() -> dict:
    return {
        "format": "goalport.template",
        "formatVersion": 1,
        "templateKey": "tk_demo",
        "version": 1,
        "name": "Read the Gospels",
        "description": None,
        "category": "faith",
        "tags": ["bible"],
        "durationDays": 28,
        "goals": [
            {
                "key": "n1",
                "parentKey": None,
                "title": "Read the Gospels",
                "description": None,
                "moduleKind": "bible",
                "priority": 3,
                "difficulty": 2,
                "targetOffsetDays": 28,
            },
            {
                "key": "n2",
                "parentKey": "n1",
                "title": "Matthew",
                "description": None,
                "moduleKind": "bible",
                "priority": 3,
                "difficulty": None,
                "targetOffsetDays": 7,
            },
        ],
    }


def _broken(change) -> bytes:
    document = _valid_document()
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"format": "goalport.template",\n  oops}', "not valid JSON at line 2, column 3"),
        (b"\xff\xfe\x00", "not UTF-8 text"),
        (b"[1, 2]", "expected a JSON object, found list"),
        (_broken(lambda d: d.update(format="todoist")), "format: expected 'goalport.template'"),
        (_broken(lambda d: d.update(formatVersion=2)), "formatVersion: 2 was written by a newer"),
        (
            _broken(lambda d: d["goals"][1].update(priority=9)),
            "goals[1].priority: 9 is greater than the maximum of 5",
        ),
        (
            _broken(lambda d: d["goals"][0].pop("title")),
            "goals[0]: 'title' is a required property",
        ),
        (
            _broken(lambda d: d["goals"][1].update(progress=40)),
            "goals[1]: Additional properties are not allowed ('progress' was unexpected)",
        ),
        (
            _broken(lambda d: d["goals"][1].update(targetOffsetDays="7")),
            "goals[1].targetOffsetDays: '7' is not of type 'integer', 'null'",
        ),
        (_broken(lambda d: d.update(goals=[])), "goals: [] should be non-empty"),
        (
            _broken(lambda d: d["goals"][1].update(parentKey="n7")),
            "goals[1].parentKey: 'n7' is not the key of an earlier goal",
        ),
        (
            _broken(lambda d: d["goals"][1].update(key="n1")),
            "goals[1].key: 'n1' is used by an earlier goal",
        ),
    ],
)
def test_malformed_or_schema_invalid_template_files_get_a_clear_error(data, expected):
    with pytest.raises(TemplateFormatError) as caught:
        load_template(data, where="plan.json")
    assert str(caught.value).startswith("plan.json: ")
    assert expected in str(caught.value)


def test_a_valid_file_imports_as_a_private_template_of_the_user(engine, marathon):
    record = import_template(engine, json.dumps(_valid_document()).encode(), "u_ben")
    assert (record.version, record.visibility, record.author_id) == (1, "private", "u_ben")
    assert record.template_key != "tk_demo"
    assert [g["title"] for g in record.document["goals"]] == ["Read the Gospels", "Matthew"]
    with pytest.raises(TemplateError, match=r"goals\[1\].priority"):
        import_template(engine, _broken(lambda d: d["goals"][1].update(priority=0)), "u_ben")


# ---------------------------------------------------------------- versions


def test_version_history_is_kept_and_an_applier_sees_what_changed(engine, marathon):
    v1 = create_template(engine, "u_ana", ["g_root"], name="Half marathon", public=True)
    apply_template(engine, v1.id, "u_ben", ApplyOptions(start=dt.date(2025, 3, 1)))
    assert [
        (a.applied_version, a.latest_version, a.changes) for a in applied_templates(engine, "u_ben")
    ] == [(1, 1, None)]

    with engine.begin() as conn:
        conn.execute(schema.goal.update().where(schema.goal.c.id == "g_taper").values(priority=2))
        conn.execute(schema.goal.delete().where(schema.goal.c.id == "g_3x"))
        add_goal(
            conn,
            "g_strength",
            "u_ana",
            "Strength work",
            parent="g_root",
            module="m_ana_fit",
            created=ts("2024-01-25"),
            targetDate=dt.date(2024, 3, 1),
        )
    v2 = create_version(engine, v1.template_key, "u_ana", goal_ids=["g_root"])
    v3 = create_version(engine, v2.id, "u_ana", name="Half marathon in 12 weeks", tags=["running"])
    with pytest.raises(TemplateError, match="only its author"):
        create_version(engine, v1.id, "u_ben", name="Hijacked")

    history = template_versions(engine, v1.id)
    assert [(r.version, r.template_key) for r in history] == [
        (1, v1.template_key),
        (2, v1.template_key),
        (3, v1.template_key),
    ]
    assert history[0].document == v1.document  # old versions are never rewritten
    assert history[2].document["goals"] == v2.document["goals"]
    assert get_template(engine, v1.template_key).id == v3.id  # a key means the latest

    (applied,) = applied_templates(engine, "u_ben")
    assert (applied.applied_version, applied.latest_version) == (1, 3)
    changes = applied.changes
    assert changes.added == ["Run a half marathon > Strength work"]
    assert changes.removed == ["Run a half marathon > Build base mileage > Run 3x per week"]
    assert changes.changed == {"Run a half marathon > Taper": {"priority": (5, 2)}}
    assert changes.details == {
        "name": ("Half marathon", "Half marathon in 12 weeks"),
        "tags": ([], ["running"]),
    }
    assert "  + Run a half marathon > Strength work" in changes.describe()
    only_details = version_diff(engine, v1.template_key, 2, 3)
    assert (only_details.added, only_details.removed, only_details.changed) == ([], [], {})
    with pytest.raises(TemplateError, match="has no version 4"):
        version_diff(engine, v1.template_key, 1, 4)


# ---------------------------------------------------------------- the public catalog


@pytest.mark.slow
def test_catalog_is_rebuilt_by_the_sensor_when_a_template_is_published(
    engine, marathon, pg_url, s3_url
):
    storage = ObjectStorage(url=s3_url)
    database = AppDatabase(url=pg_url)
    defs = dg.Definitions.merge(
        template_assets.defs,
        dg.Definitions(resources={"database": database, "storage": storage}),
    )
    job = defs.resolve_job_def("template_catalog_job")

    def tick(instance, cursor):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"database": database}
        ) as context:
            return template_assets.template_catalog_sensor(context), context.cursor

    instance = dg.DagsterInstance.ephemeral()
    public = create_template(
        engine,
        "u_ana",
        ["g_root"],
        name="Half marathon",
        category="fitness",
        tags=["running", "beginner"],
        public=True,
    )
    create_template(engine, "u_ana", ["g_other"], name="Private plan", category="misc")

    request, cursor = tick(instance, None)
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("template-catalog-")
    result = job.execute_in_process(instance=instance)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["files"].value == 1
    index = json.loads(storage.read_bytes(catalog_index_key()))
    assert index["templateCount"] == 1
    assert index["categories"] == [{"name": "fitness", "templates": 1}]
    assert index["tags"] == [
        {"name": "beginner", "templates": 1},
        {"name": "running", "templates": 1},
    ]
    (entry,) = index["templates"]
    assert (entry["templateKey"], entry["latestVersion"], entry["downloadCount"]) == (
        public.template_key,
        1,
        0,
    )
    assert entry["goalCount"] == 4 and entry["durationDays"] == 91
    file_key = entry["versions"][0]["file"]
    assert file_key == f"templates/catalog/{public.template_key}/v1.json"
    assert load_template(storage.read_bytes(file_key))["goals"] == public.document["goals"]

    skip, cursor_after = tick(instance, cursor)
    assert isinstance(skip, dg.SkipReason) and cursor_after == cursor

    # Downloads, ratings and a newly published version all move the fingerprint.
    apply_template(engine, public.id, "u_ben", ApplyOptions(start=dt.date(2025, 1, 6)))
    rate_template(engine, public.id, "u_ben", 4)
    request, cursor = tick(instance, cursor)
    assert isinstance(request, dg.RunRequest)
    create_version(engine, public.id, "u_ana", description="Now with a taper week.")
    request, cursor = tick(instance, cursor)
    assert isinstance(request, dg.RunRequest)
    assert job.execute_in_process(instance=instance).success

    (entry,) = json.loads(storage.read_bytes(catalog_index_key()))["templates"]
    assert entry["latestVersion"] == 2
    assert entry["description"] == "Now with a taper week."
    assert [(v["version"], v["downloadCount"]) for v in entry["versions"]] == [(1, 1), (2, 0)]
    assert (entry["downloadCount"], entry["rating"], entry["ratingCount"]) == (1, 4.0, 1)
    assert storage.exists(f"templates/catalog/{public.template_key}/v2.json")
    assert [e["templateKey"] for e in search_catalog(storage, tag="RUNNING")] == [
        public.template_key
    ]
    assert search_catalog(storage, category="misc") == []
    assert search_catalog(storage, search="taper half") != []

    # Unpublishing (version 3, private) takes every version out of the catalog.
    create_version(engine, public.id, "u_ana", public=False)
    assert [r.visibility for r in template_versions(engine, public.id)] == ["private"] * 3
    assert isinstance(tick(instance, cursor)[0], dg.RunRequest)
    rebuild_catalog(engine, storage)
    assert json.loads(storage.read_bytes(catalog_index_key()))["templates"] == []
    assert storage.list("templates/catalog") == [catalog_index_key()]


def test_listing_filters_by_category_tag_and_text_and_shows_own_private(engine, marathon):
    create_template(
        engine,
        "u_ana",
        ["g_root"],
        name="Half marathon",
        category="Fitness",
        tags=["running"],
        public=True,
    )
    create_template(engine, "u_ana", ["g_other"], name="Quiet plan", category="misc")
    names = lambda entries: [e["name"] for e in entries]  # noqa: E731
    assert names(list_templates(engine)) == ["Half marathon"]
    assert names(list_templates(engine, user_id="u_ana")) == ["Half marathon", "Quiet plan"]
    assert names(list_templates(engine, category="fitness")) == ["Half marathon"]
    assert names(list_templates(engine, tag="running", search="HALF marathon")) == ["Half marathon"]
    assert names(list_templates(engine, search="marathon swimming")) == []


# ---------------------------------------------------------------- the command line


def test_cli_creates_exports_imports_lists_previews_and_applies(
    engine, marathon, pg_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "storage"))
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(main, ["template", *args])
        assert result.exit_code == code, result.output
        return result.output

    out = run(
        "create", "u_ana", "g_root", "--name", "Half marathon", "--category", "fitness",
        "--tag", "running,beginner", "--public",
    )  # fmt: skip
    template_id = out.strip().splitlines()[-1]
    record = get_template(engine, template_id)
    assert (record.name, record.tags, record.visibility) == (
        "Half marathon",
        ["running", "beginner"],
        "public",
    )

    out_file = tmp_path / "plan.json"
    run("export", template_id, "--out", str(out_file))
    assert load_template(out_file.read_bytes())["goals"] == record.document["goals"]
    imported_id = run("import", str(out_file), "--user", "u_ben").strip().splitlines()[-1]
    assert get_template(engine, imported_id).author_id == "u_ben"

    listed = run("list", "--category", "fitness")
    assert template_id in listed and imported_id not in listed
    assert imported_id in run("list", "--user", "u_ben", "--search", "half")
    assert "no templates match" in run("list", "--tag", "swimming")

    preview = run(
        "apply", template_id, "--user", "u_ben", "--start", "2025-03-01", "--rename",
        "Ben's half", "--preview",
    )  # fmt: skip
    assert "n1 Ben's half" in preview and "target 2025-05-31" in preview
    assert "nothing was changed" in preview
    assert goals_of(engine, "u_ben") == []
    out = run(
        "apply", template_id, "--user", "u_ben", "--start", "2025-03-01", "--without-subgoals"
    )
    assert "created 1 goals for u_ben" in out
    assert [(g["title"], g["targetDate"]) for g in goals_of(engine, "u_ben")] == [
        ("Run a half marathon", dt.date(2025, 5, 31))
    ]

    new_id = run(
        "update", template_id, "--user", "u_ana", "--name", "Half marathon v2"
    ).splitlines()[-1]
    assert get_template(engine, new_id).version == 2
    assert "\tv1\t" in run("versions", template_id) and "\tv2\t" in run("versions", new_id)
    assert "~ template name: 'Half marathon' -> 'Half marathon v2'" in run(
        "diff", template_id, "--from", "1", "--to", "2"
    )
    assert "applied version 1, version 2 is out" in run("applied", "--user", "u_ben")

    assert run("catalog").strip().endswith("templates/catalog/index.json")
    browsed = run("list", "--catalog", "--search", "marathon")
    assert "Half marathon v2" in browsed and "1 downloads" in browsed

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**_valid_document(), "tags": "bible"}))
    out = run("import", str(bad), "--user", "u_ben", code=1)
    assert "bad.json: tags: 'bible' is not of type 'array'" in out
    out = run("create", "u_ben", "g_root", "--name", "x", code=1)
    assert "user u_ben has no goal with id g_root" in out
