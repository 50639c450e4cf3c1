"""The synthetic population: one Arrow table per app table, the same for the same seed.

The demo, the tests and the benchmarks all need a population that looks like the app's real
one: users with few and with very many goals, sub-goal trees, months of progress, Bible
study and work projects, settings, and the awkward text of `texts`. `generate_population`
builds it vectorised with numpy (through `columns`), so that 20,000 users (about 5 million
rows) take a few seconds.

The same `(n_users, seed, heavy_every)` always gives the same tables. Each table has its
own random stream, and rows are generated user by user, so ids (see `columns.RowIds`) come
out sorted by user, which is what makes the bulk load fast. Every reference points at a
row of the same user, and every timestamp is consistent with the rows it depends on (a
sub-goal is never older than its parent, progress is recorded while its goal runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from resources.schema import APP_TABLE_NAMES
from synthetic.columns import (
    RowIds,
    app_table,
    between,
    bools,
    dates,
    decimals,
    ints,
    per_user_ordinal,
    pick,
    pool,
    refs,
    segments,
    table_rng,
    texts,
    timestamps,
)
from synthetic.texts import (
    ACHIEVEMENT_DESCRIPTIONS,
    ACHIEVEMENTS,
    BOOKS,
    DESCRIPTIONS,
    DOMAINS,
    GOAL_TITLES,
    MODULE_NAMES,
    NOTE_CONTENTS,
    NOTE_TAGS,
    NOTE_TITLES,
    PEOPLE,
    PLAN_DESCRIPTIONS,
    PLAN_NAMES,
    PROGRESS_NOTES,
    PROJECT_NAMES,
    PROJECT_STATUSES,
    SETTINGS,
    TASK_NOTES,
    TASK_STATUSES,
    TASK_TITLES,
    TIMEZONES,
)

# The generated world's "now": every timestamp is before it.
DATA_START = datetime(2023, 1, 1, tzinfo=UTC)
DATA_END = datetime(2026, 9, 30, tzinfo=UTC)
# Plans reach a little past "now" (open goals have future target dates), but no date or
# timestamp reaches 2026-11-01.
PLAN_HORIZON_END = date(2026, 10, 31)

# Sub-goals go down three levels below a root goal (a root has depth 0).
MAX_SUBGOAL_DEPTH = 3
HEAVY_USER_GOALS = 500
HEAVY_USER_MIN_PROGRESS = 50_000

MODULE_KINDS = ("fitness", "learning", "bible", "work", "personal")
_KIND = {kind: i for i, kind in enumerate(MODULE_KINDS)}

_MS_PER_DAY = 86_400_000
_START_MS = int(DATA_START.timestamp() * 1000)
_END_MS = int(DATA_END.timestamp() * 1000)
_EPOCH = date(1970, 1, 1)
_HORIZON_DAY = (PLAN_HORIZON_END - _EPOCH).days
_HORIZON_MS = _HORIZON_DAY * _MS_PER_DAY + 23 * 3_600_000

# Goals' maximum values (numeric(12, 2)), in cents.
_GOAL_MAX_VALUES_CENTS = (10_000, 1_000, 4_220, 50_000, 100_000, 1_250, 500, 2_620, 25_000_000, 100)


def _by_kind(
    pools: Mapping[str, tuple[str, ...]], kind: np.ndarray, rng
) -> tuple[pa.Array, np.ndarray]:
    """One pool of all kinds' texts, and for each row a random index into its kind's part."""
    sizes = np.asarray([len(pools[k]) for k in MODULE_KINDS])
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    idx = offsets[kind] + np.floor(rng.random(len(kind)) * sizes[kind]).astype(np.int64)
    return pool(t for k in MODULE_KINDS for t in pools[k]), idx


def _day_of(ms: np.ndarray) -> np.ndarray:
    return ms // _MS_PER_DAY


def _heavy_users(n_users: int, heavy_every: int) -> np.ndarray:
    heavy = np.zeros(n_users, dtype=bool)
    if heavy_every:
        heavy[1::heavy_every] = True
    return heavy


def generate_population(
    n_users: int, seed: int = 0, heavy_every: int = 2000
) -> dict[str, pa.Table]:
    """One Arrow table per app table for `n_users` synthetic users, the same for the same
    arguments. Users at index 1, 1 + heavy_every, ... are heavy (500 goals, 50,000+ progress
    rows); `heavy_every=0` makes none."""
    if n_users < 0:
        raise ValueError(f"n_users must be >= 0, got {n_users}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if heavy_every < 0:
        raise ValueError(f"heavy_every must be >= 0 (0 disables heavy users), got {heavy_every}")
    n = n_users
    heavy = _heavy_users(n, heavy_every)
    tables: dict[str, pa.Table] = {}
    users = _generate_users(seed, n, heavy, tables)
    modules = _generate_modules(seed, n, heavy, users, tables)
    goals = _generate_goals(seed, n, heavy, users, modules, tables)
    _generate_progress(seed, n, heavy, goals, tables)
    _generate_achievements(seed, n, heavy, users, goals, tables)
    _generate_settings(seed, n, heavy, users, tables)
    _generate_bible(seed, n, heavy, users, modules, tables)
    _generate_work(seed, n, heavy, users, modules, goals, tables)
    return {name: tables[name] for name in APP_TABLE_NAMES}


def generated_user_ids(n_users: int, seed: int = 0) -> pa.Array:
    """The `User.id`s that `generate_population(n_users, seed, ...)` creates, in order."""
    users = np.arange(n_users, dtype=np.int64)
    return RowIds(seed, "User", users, np.zeros(n_users, dtype=np.int64)).array


def _generate_users(seed, n, heavy, tables) -> dict[str, RowIds | np.ndarray]:
    rng = table_rng(seed, "User")
    users = np.arange(n, dtype=np.int64)
    created = between(rng, np.full(n, _START_MS), np.full(n, _END_MS - 120 * _MS_PER_DAY))
    # Heavy users have been around since the start: years of daily progress.
    created[heavy] = _START_MS + between(
        rng, np.zeros(heavy.sum(), np.int64), np.full(heavy.sum(), 30 * _MS_PER_DAY)
    )
    updated = between(rng, created, np.full(n, _END_MS), power=3)
    person = pick(rng, n, len(PEOPLE))
    # The app asks for first and last name; a one-word name is a first name only.
    first_names = pool(p[0].split(" ", 1)[0] for p in PEOPLE)
    last_names = pool((p[0].split(" ", 1) + [None])[1] for p in PEOPLE)
    stems = pool(p[1] for p in PEOPLE)
    domain = pick(rng, n, len(DOMAINS))
    # The user's index and the seed make every address unique, across seeds too.
    email = pc.binary_join_element_wise(
        texts(stems, person),
        pa.array(np.char.add("u", users.astype(str)), type=pa.string()),
        pa.array(np.char.add(f"s{seed}@", np.asarray(DOMAINS)[domain]), type=pa.string()),
        ".",
    )
    ids = RowIds(seed, "User", users, np.zeros(n, dtype=np.int64))
    tables["User"] = app_table(
        "User",
        ids,
        {
            "email": email,
            # A few users never gave a name, a few more only a first name.
            "firstName": texts(first_names, person, no_name := rng.random(n) < 0.04),
            "lastName": texts(last_names, person, no_name | (rng.random(n) < 0.05)),
            "timezone": texts(pool(TIMEZONES), pick(rng, n, len(TIMEZONES)), rng.random(n) < 0.08),
            "createdAt": timestamps(created),
            "updatedAt": timestamps(updated),
        },
    )
    return {"id": ids, "created": created}


def _generate_modules(seed, n, heavy, users, tables) -> dict[str, RowIds | np.ndarray]:
    rng = table_rng(seed, "Module")
    include = rng.random((n, len(MODULE_KINDS))) < np.array([0.7, 0.6, 0.45, 0.55, 0.8])
    include[heavy] = True
    include[~include.any(axis=1), _KIND["personal"]] = True
    user_of, kind = np.nonzero(include)  # row-major: sorted by user, then kind
    m = len(user_of)
    counts = include.sum(axis=1)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    ordinal = np.arange(m) - starts[user_of]
    name_pool, name_idx = _by_kind(MODULE_NAMES, kind, rng)
    created = between(
        rng,
        users["created"][user_of],
        np.minimum(users["created"][user_of] + 30 * _MS_PER_DAY, _END_MS),
    )
    ids = RowIds(seed, "Module", user_of, ordinal)
    tables["Module"] = app_table(
        "Module",
        ids,
        {
            "userId": refs(users["id"], user_of),
            "kind": texts(pool(MODULE_KINDS), kind),
            "name": texts(name_pool, name_idx),
            "isActive": bools(rng.random(m) < 0.9),
            "createdAt": timestamps(created),
        },
    )
    return {"id": ids, "user": user_of, "kind": kind, "start": starts, "count": counts}


def _generate_goals(seed, n, heavy, users, modules, tables) -> dict[str, RowIds | np.ndarray]:
    rng = table_rng(seed, "Goal")
    counts = rng.negative_binomial(2, 2 / 21, size=n) + 1
    counts[rng.random(n) < 0.03] = 0  # signed up, never set a goal
    counts[heavy] = HEAVY_USER_GOALS
    owner, ordinal, starts = segments(counts)
    g = len(owner)

    # Goals are created one after another over the user's life (ordinal order = time order),
    # so a parent chosen among earlier goals is never younger than its sub-goal.
    user_created = users["created"][owner]
    frac = np.sort(owner + rng.random(g)) - owner
    created = user_created + (frac * (_END_MS - 14 * _MS_PER_DAY - user_created)).astype(np.int64)

    # Depth first, then the parent: the latest earlier goal of the same user one level up.
    depth = rng.choice(MAX_SUBGOAL_DEPTH + 1, size=g, p=[0.45, 0.3, 0.17, 0.08])
    depth[ordinal == 0] = 0
    parent = np.full(g, -1, dtype=np.int64)
    index = np.arange(g, dtype=np.int64)
    for level in range(1, MAX_SUBGOAL_DEPTH + 1):
        latest_above = np.maximum.accumulate(np.where(depth == level - 1, index, -1))
        before = np.concatenate(([-1], latest_above[:-1]))
        wants = depth == level
        found = wants & (before >= starts[owner])
        parent[found] = before[found]
        depth[wants & ~found] = 0

    module_count = modules["count"][owner]
    module_row = modules["start"][owner] + np.floor(rng.random(g) * module_count).astype(np.int64)
    no_module = rng.random(g) < 0.08
    for level in range(1, MAX_SUBGOAL_DEPTH + 1):  # a sub-goal lives in its parent's module
        at = depth == level
        module_row[at] = module_row[parent[at]]
        no_module[at] = no_module[parent[at]]
    kind = np.where(no_module, _KIND["personal"], modules["kind"][module_row])

    completed = rng.random(g) < 0.35
    completed_at = between(rng, created, np.full(g, _END_MS))
    updated = np.where(
        completed,
        between(rng, completed_at, np.minimum(completed_at + 7 * _MS_PER_DAY, _END_MS)),
        between(rng, created, np.full(g, _END_MS), power=2),
    )
    target_day = np.minimum(_day_of(created) + rng.integers(14, 400, size=g), _HORIZON_DAY)

    title_pool, title_idx = _by_kind(GOAL_TITLES, kind, rng)
    ids = RowIds(seed, "Goal", owner, ordinal)
    tables["Goal"] = app_table(
        "Goal",
        ids,
        {
            "userId": refs(users["id"], owner),
            "moduleId": refs(modules["id"], module_row, no_module),
            "parentGoalId": refs(ids, parent, parent < 0),
            "title": texts(title_pool, title_idx),
            "description": texts(
                pool(DESCRIPTIONS), pick(rng, g, len(DESCRIPTIONS)), rng.random(g) < 0.35
            ),
            "priority": ints(rng.integers(1, 6, size=g)),
            "difficulty": ints(rng.integers(1, 6, size=g), rng.random(g) < 0.2),
            "targetDate": dates(target_day, rng.random(g) < 0.3),
            "isCompleted": bools(completed),
            "completedAt": timestamps(completed_at, ~completed),
            "createdAt": timestamps(created),
            "updatedAt": timestamps(updated),
        },
    )
    return {
        "id": ids,
        "user_id": users["id"],
        "owner": owner,
        "start": starts,
        "count": counts,
        "created": created,
        "completed": completed,
        "completed_at": completed_at,
    }


def _generate_progress(seed, n, heavy, goals, tables) -> None:
    rng = table_rng(seed, "Progress")
    owner = goals["owner"]
    g = len(owner)
    counts = rng.negative_binomial(1.5, 1.5 / 10.2, size=g)  # mean 8.7
    is_heavy_goal = heavy[owner]
    counts[is_heavy_goal] = rng.poisson(110, size=int(is_heavy_goal.sum()))
    if is_heavy_goal.any():  # top up each heavy user's first goal to the minimum
        per_user = np.bincount(owner, weights=counts, minlength=n).astype(np.int64)
        deficit = np.maximum(HEAVY_USER_MIN_PROGRESS - per_user, 0) * heavy
        counts[goals["start"][heavy]] += deficit[heavy]
    goal_of, _, starts = segments(counts)
    p = len(goal_of)
    user_of = owner[goal_of]

    # Entries are spread over the goal's active life, in order: cumulative random gaps,
    # normalised per goal (plus a final gap so the last entry is not always at the end).
    cumulative = np.concatenate(([0.0], np.cumsum(rng.exponential(size=p))))
    ends = starts + counts
    before = cumulative[starts]
    total = cumulative[ends] - before
    total = total + rng.exponential(size=g) * np.maximum(total / np.maximum(counts, 1), 1e-9)
    frac = (cumulative[1:] - before[goal_of]) / total[goal_of]
    goal_end = np.where(goals["completed"], goals["completed_at"], _END_MS)
    span = goal_end - goals["created"]
    recorded = goals["created"][goal_of] + np.floor(frac * span[goal_of]).astype(np.int64)

    has_max = rng.random(g) < 0.6
    max_cents = np.asarray(_GOAL_MAX_VALUES_CENTS, dtype=np.int64)[
        pick(rng, g, len(_GOAL_MAX_VALUES_CENTS))
    ]
    open_scale = rng.integers(1_000, 500_000, size=g)  # open-ended counters: minutes, pages
    reach = np.where(goals["completed"], 1.0, rng.uniform(0.2, 0.95, size=g))
    level = np.clip(frac**0.8 * reach[goal_of] + rng.normal(0, 0.04, size=p), 0.0, 1.0)
    scale = np.where(has_max, max_cents, open_scale)[goal_of]
    value = np.floor(level * scale).astype(np.int64)
    last = ends - 1
    finished = (counts > 0) & goals["completed"] & has_max
    value[last[finished]] = max_cents[finished]  # a completed goal ends at its maximum

    tables["Progress"] = app_table(
        "Progress",
        RowIds(seed, "Progress", user_of, per_user_ordinal(user_of, n)),
        {
            "userId": refs(goals["user_id"], user_of),
            "goalId": refs(goals["id"], goal_of),
            "value": decimals("Progress", "value", value),
            "maxValue": decimals(
                "Progress",
                "maxValue",
                max_cents[goal_of],
                ~has_max[goal_of],
            ),
            "notes": texts(
                pool(PROGRESS_NOTES), pick(rng, p, len(PROGRESS_NOTES)), rng.random(p) < 0.75
            ),
            "recordedAt": timestamps(recorded),
        },
    )


def _random_row_of_user(rng, user_of_row, start, count) -> tuple[np.ndarray, np.ndarray]:
    """For each row, a random row (index) among its user's rows in another table; -1 and a
    missing flag where the user has none."""
    c = count[user_of_row]
    row = start[user_of_row] + np.floor(rng.random(len(user_of_row)) * c).astype(np.int64)
    missing = c == 0
    return np.where(missing, -1, row), missing


def _generate_achievements(seed, n, heavy, users, goals, tables) -> None:
    rng = table_rng(seed, "Achievement")
    counts = np.where(goals["count"] > 0, rng.poisson(3, size=n), rng.integers(0, 2, size=n))
    counts[heavy] = 40
    user_of, ordinal, _ = segments(counts)
    a = len(user_of)
    goal, no_goal = _random_row_of_user(rng, user_of, goals["start"], goals["count"])
    no_goal |= rng.random(a) < 0.4
    goal_safe = np.where(no_goal, 0, goal)
    entry = pick(rng, a, len(ACHIEVEMENTS))
    if len(goals["id"].codes):
        goal_created = goals["created"][goal_safe]
        earned_for_goal = np.where(
            goals["completed"][goal_safe],
            goals["completed_at"][goal_safe],
            between(rng, goal_created, np.full(a, _END_MS)),
        )
    else:
        earned_for_goal = np.zeros(a, dtype=np.int64)
    earned = np.where(
        no_goal, between(rng, users["created"][user_of], np.full(a, _END_MS)), earned_for_goal
    )
    tables["Achievement"] = app_table(
        "Achievement",
        RowIds(seed, "Achievement", user_of, ordinal),
        {
            "userId": refs(users["id"], user_of),
            "goalId": refs(goals["id"], goal_safe, no_goal),
            "kind": texts(pool(k for k, _, _ in ACHIEVEMENTS), entry),
            "title": texts(pool(t for _, t, _ in ACHIEVEMENTS), entry),
            "description": texts(
                pool(ACHIEVEMENT_DESCRIPTIONS),
                pick(rng, a, len(ACHIEVEMENT_DESCRIPTIONS)),
                rng.random(a) < 0.3,
            ),
            "points": ints(np.asarray([pts for _, _, pts in ACHIEVEMENTS])[entry]),
            "earnedAt": timestamps(earned),
        },
    )


def _generate_settings(seed, n, heavy, users, tables) -> None:
    rng = table_rng(seed, "UserSetting")
    include = rng.random((n, len(SETTINGS))) < 0.6
    include[heavy] = True
    user_of, key = np.nonzero(include)  # each key at most once per user
    s = len(user_of)
    ordinal = per_user_ordinal(user_of, n)
    width = max(len(values) for _, values in SETTINGS)
    value_pool = pool(values[i % len(values)] for _, values in SETTINGS for i in range(width))
    value_count = np.asarray([len(values) for _, values in SETTINGS])
    value_idx = key * width + np.floor(rng.random(s) * value_count[key]).astype(np.int64)
    updated = between(rng, users["created"][user_of], np.full(s, _END_MS))
    tables["UserSetting"] = app_table(
        "UserSetting",
        RowIds(seed, "UserSetting", user_of, ordinal),
        {
            "userId": refs(users["id"], user_of),
            "key": texts(pool(k for k, _ in SETTINGS), key),
            "value": texts(value_pool, value_idx, rng.random(s) < 0.05),
            "updatedAt": timestamps(updated),
        },
    )


def _generate_bible(seed, n, heavy, users, modules, tables) -> None:
    rng = table_rng(seed, "BibleReadingPlan")
    has_bible = np.zeros(n, dtype=bool)
    has_bible[modules["user"][modules["kind"] == _KIND["bible"]]] = True

    plan_counts = np.where(has_bible, rng.integers(1, 4, size=n), 0)
    plan_counts[heavy] = 4
    plan_user, plan_ordinal, _ = segments(plan_counts)
    pl = len(plan_user)
    plan_created = between(
        rng, users["created"][plan_user], np.full(pl, _END_MS - 30 * _MS_PER_DAY)
    )
    # Starts the day after it was created at the earliest, so readings come after creation.
    start_day = _day_of(plan_created) + rng.integers(1, 15, size=pl)
    length = rng.integers(30, 366, size=pl)
    end_day = np.minimum(start_day + length, _HORIZON_DAY)
    plan_ids = RowIds(seed, "BibleReadingPlan", plan_user, plan_ordinal)
    tables["BibleReadingPlan"] = app_table(
        "BibleReadingPlan",
        plan_ids,
        {
            "userId": refs(users["id"], plan_user),
            "name": texts(pool(PLAN_NAMES), pick(rng, pl, len(PLAN_NAMES))),
            "description": texts(
                pool(PLAN_DESCRIPTIONS),
                pick(rng, pl, len(PLAN_DESCRIPTIONS)),
                rng.random(pl) < 0.3,
            ),
            "startDate": dates(start_day),
            "endDate": dates(end_day, rng.random(pl) < 0.2),
            "createdAt": timestamps(plan_created),
        },
    )

    reading_counts = np.minimum(rng.integers(3, 16, size=pl), length)
    reading_counts[heavy[plan_user]] = np.minimum(300, length[heavy[plan_user]])
    reading_counts = np.minimum(reading_counts, _HORIZON_DAY - start_day + 1)
    plan_of, day_in_plan, _ = segments(reading_counts)
    r = len(plan_of)
    reading_user = plan_user[plan_of]
    book_of_plan = pick(rng, pl, len(BOOKS))
    first_chapter = np.floor(
        rng.random(pl) * np.asarray([c for _, c in BOOKS])[book_of_plan]
    ).astype(np.int64)
    book = book_of_plan[plan_of]
    chapters_in_book = np.asarray([c for _, c in BOOKS])[book]
    chapter = (first_chapter[plan_of] + day_in_plan) % chapters_in_book + 1
    verse_start = rng.integers(1, 21, size=r)
    no_verses = rng.random(r) < 0.5
    scheduled_day = start_day[plan_of] + day_in_plan
    scheduled_ms = scheduled_day * _MS_PER_DAY
    done = (scheduled_ms + 3 * _MS_PER_DAY < _END_MS) & (rng.random(r) < 0.75)
    completed = scheduled_ms + rng.integers(6 * 3_600_000, 72 * 3_600_000, size=r)
    reading_ids = RowIds(seed, "BibleReading", reading_user, per_user_ordinal(reading_user, n))
    book_pool = pool(b for b, _ in BOOKS)
    tables["BibleReading"] = app_table(
        "BibleReading",
        reading_ids,
        {
            "userId": refs(users["id"], reading_user),
            "planId": refs(plan_ids, plan_of),
            "book": texts(book_pool, book),
            "chapter": ints(chapter),
            "verseStart": ints(verse_start, no_verses),
            "verseEnd": ints(verse_start + rng.integers(0, 16, size=r), no_verses),
            "scheduledDate": dates(scheduled_day, rng.random(r) < 0.03),
            "completedAt": timestamps(completed, ~done),
        },
    )

    reading_start = np.zeros(n, dtype=np.int64)
    reading_count = np.bincount(reading_user, minlength=n)
    np.cumsum(reading_count[:-1], out=reading_start[1:])
    note_counts = np.where(has_bible, rng.poisson(6, size=n), 0)
    note_counts[heavy] = 60
    note_user, note_ordinal, _ = segments(note_counts)
    nn = len(note_user)
    reading, unlinked = _random_row_of_user(rng, note_user, reading_start, reading_count)
    unlinked |= rng.random(nn) < 0.3
    reading_safe = np.where(unlinked, 0, reading)
    # A note on a reading is about that reading's passage, written after the plan began.
    random_book = pick(rng, nn, len(BOOKS))
    random_chapter = (
        np.floor(rng.random(nn) * np.asarray([c for _, c in BOOKS])[random_book]).astype(np.int64)
        + 1
    )
    if r:
        note_book = np.where(unlinked, random_book, book[reading_safe])
        note_chapter = np.where(unlinked, random_chapter, chapter[reading_safe])
        since = np.where(unlinked, users["created"][note_user], plan_created[plan_of[reading_safe]])
    else:
        note_book, note_chapter, since = random_book, random_chapter, users["created"][note_user]
    created = between(rng, since, np.full(nn, _END_MS))
    tables["BibleStudyNote"] = app_table(
        "BibleStudyNote",
        RowIds(seed, "BibleStudyNote", note_user, note_ordinal),
        {
            "userId": refs(users["id"], note_user),
            "readingId": refs(reading_ids, reading_safe, unlinked),
            "book": texts(book_pool, note_book),
            "chapter": ints(note_chapter),
            "verse": ints(rng.integers(1, 30, size=nn), rng.random(nn) < 0.4),
            "title": texts(
                pool(NOTE_TITLES), pick(rng, nn, len(NOTE_TITLES)), rng.random(nn) < 0.3
            ),
            "content": texts(pool(NOTE_CONTENTS), pick(rng, nn, len(NOTE_CONTENTS))),
            "tags": texts(pool(NOTE_TAGS), pick(rng, nn, len(NOTE_TAGS)), rng.random(nn) < 0.35),
            "createdAt": timestamps(created),
            "updatedAt": timestamps(between(rng, created, np.full(nn, _END_MS), power=3)),
        },
    )


def _generate_work(seed, n, heavy, users, modules, goals, tables) -> None:
    rng = table_rng(seed, "WorkProject")
    has_work = np.zeros(n, dtype=bool)
    has_work[modules["user"][modules["kind"] == _KIND["work"]]] = True
    project_counts = np.where(has_work, rng.integers(1, 5, size=n), 0)
    project_counts[heavy] = 10
    project_user, project_ordinal, _ = segments(project_counts)
    pj = len(project_user)
    goal, no_goal = _random_row_of_user(rng, project_user, goals["start"], goals["count"])
    no_goal |= rng.random(pj) < 0.5
    created = between(rng, users["created"][project_user], np.full(pj, _END_MS - 7 * _MS_PER_DAY))
    updated = between(rng, created, np.full(pj, _END_MS), power=2)
    status = pick(rng, pj, len(PROJECT_STATUSES))
    start_day = _day_of(created) + rng.integers(0, 30, size=pj)
    due_day = np.minimum(start_day + rng.integers(14, 365, size=pj), _HORIZON_DAY)
    budget = rng.integers(0, 25_000_000, size=pj) * np.where(rng.random(pj) < 0.5, 100, 1)
    project_ids = RowIds(seed, "WorkProject", project_user, project_ordinal)
    tables["WorkProject"] = app_table(
        "WorkProject",
        project_ids,
        {
            "userId": refs(users["id"], project_user),
            "goalId": refs(goals["id"], np.where(no_goal, 0, goal), no_goal),
            "name": texts(pool(PROJECT_NAMES), pick(rng, pj, len(PROJECT_NAMES))),
            "description": texts(
                pool(DESCRIPTIONS), pick(rng, pj, len(DESCRIPTIONS)), rng.random(pj) < 0.4
            ),
            "status": texts(pool(PROJECT_STATUSES), status),
            "budget": decimals("WorkProject", "budget", budget, rng.random(pj) < 0.4),
            "startDate": dates(start_day, rng.random(pj) < 0.15),
            "dueDate": dates(due_day, rng.random(pj) < 0.3),
            "createdAt": timestamps(created),
            "updatedAt": timestamps(updated),
        },
    )

    task_counts = rng.integers(1, 9, size=pj)
    task_counts[heavy[project_user]] = 60
    project_of, _, _ = segments(task_counts)
    t = len(project_of)
    task_user = project_user[project_of]
    task_status = pick(rng, t, len(TASK_STATUSES))
    task_status[status[project_of] == PROJECT_STATUSES.index("done")] = TASK_STATUSES.index("done")
    done = task_status == TASK_STATUSES.index("done")
    task_created = between(rng, created[project_of], np.full(t, _END_MS - _MS_PER_DAY))
    completed = between(rng, task_created, np.full(t, _END_MS))
    due = np.minimum(
        task_created + rng.integers(_MS_PER_DAY, 60 * _MS_PER_DAY, size=t), _HORIZON_MS
    )
    estimate = rng.integers(1, 321, size=t) * 25  # quarter hours, in hundredths
    tables["WorkTask"] = app_table(
        "WorkTask",
        RowIds(seed, "WorkTask", task_user, per_user_ordinal(task_user, n)),
        {
            "userId": refs(users["id"], task_user),
            "projectId": refs(project_ids, project_of),
            "title": texts(pool(TASK_TITLES), pick(rng, t, len(TASK_TITLES))),
            "notes": texts(pool(TASK_NOTES), pick(rng, t, len(TASK_NOTES)), rng.random(t) < 0.5),
            "status": texts(pool(TASK_STATUSES), task_status),
            "priority": ints(rng.integers(1, 6, size=t)),
            "estimateHours": decimals(
                "WorkTask",
                "estimateHours",
                estimate,
                rng.random(t) < 0.3,
            ),
            "dueAt": timestamps(due, rng.random(t) < 0.4),
            "completedAt": timestamps(completed, ~done),
            "createdAt": timestamps(task_created),
        },
    )
