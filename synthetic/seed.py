"""Deterministic, realistic synthetic data for the app's tables, and a fast bulk loader.

The demo, the tests and the benchmarks all need a population that looks like the app's real
one: users with few and with very many goals, sub-goal trees, months of progress, Bible
study and work projects, settings, and the text that breaks naive exporters (emoji, accents,
CJK, right-to-left script, multi-line notes, values starting with `=`, `+`, `-`, `@`,
NULLs, empty strings). `generate_population` builds it as Arrow tables, vectorised with
numpy so that 20,000 users (about 5 million rows) take a few seconds; `load_population`
bulk loads them (binary COPY on PostgreSQL); `seed_database` migrates, then does both.

The same `(n_users, seed, heavy_every)` always gives the same tables. Ids are cuid-like
(`c` + 24 base-36 characters) made from the seed, the table, the user's index and the row's
position among that user's rows: unique within a seed, different for every seed, and
sorted by user, which is what makes the bulk load fast (see `_Ids`).
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES, APP_TABLES

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

# ------------------------------------------------------------------------- text pools

# (display name, ASCII e-mail stem)
_PEOPLE = (
    ("José García", "jose.garcia"),
    ("Zoë Brontë", "zoe.bronte"),
    ("Łukasz Żółkiewski", "lukasz.zolkiewski"),
    ("Amélie Dubois", "amelie.dubois"),
    ("Søren Kierkegaard", "soren.kierkegaard"),
    ("Ólafur Ragnarsson", "olafur.ragnarsson"),
    ("Nguyễn Thị Minh Khai", "minh.nguyen"),
    ("山田 太郎", "taro.yamada"),
    ("李小龙", "xiaolong.li"),
    ("김민준", "minjun.kim"),
    ("محمد العلي", "mohammed.alali"),
    ("فاطمة الزهراء", "fatima.zahra"),
    ("דוד כהן", "david.cohen"),
    ("שרה לוי", "sarah.levi"),
    ("Ана Иванова", "ana.ivanova"),
    ("Γιώργος Παπαδόπουλος", "giorgos.papadopoulos"),
    ("Chloé O'Brien", "chloe.obrien"),
    ("Jean-Luc Picard", "jeanluc.picard"),
    ("Maria da Conceição", "maria.conceicao"),
    ("Björn Ängström", "bjorn.angstrom"),
    ("Priya Raghunathan", "priya.raghunathan"),
    ("Emily Smith", "emily.smith"),
    ("Liam Johnson", "liam.johnson"),
    ("Noah Williams", "noah.williams"),
    ("Olivia Brown", "olivia.brown"),
    ("Ava 🌸 Martinez", "ava.martinez"),
    ("Mateo Rodríguez", "mateo.rodriguez"),
    ("Chinedu Okafor", "chinedu.okafor"),
    ("Aroha Ngata", "aroha.ngata"),
    ("Dr. Hannah Müller-Lüdenscheidt", "hannah.mueller"),
    ("  Sam Lee  ", "sam.lee"),
    ("@kate_runs", "kate.runs"),
)
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
_TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Warsaw",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "America/Mexico_City",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Seoul",
    "Asia/Jerusalem",
    "Asia/Riyadh",
    "Asia/Kolkata",
    "Asia/Ho_Chi_Minh",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Africa/Lagos",
    "America/St_Johns",
)

_MODULE_NAMES = {
    "fitness": ("Fitness", "Fitness 💪", "Salud y deporte", "ランニング", "Sport & Santé"),
    "learning": ("Learning", "Aprendizaje 📚", "语言学习", "Weiterbildung", "تعلم"),
    "bible": ("Bible Study", "Estudio bíblico ✝️", "聖書の学び", "לימוד תנ״ך", "Lectio Divina"),
    "work": ("Work", "Trabalho 💼", "仕事", "Projets pro", "عمل"),
    "personal": ("Personal", "Perso ✨", "个人", "Persönlich", "אישי"),
}

_GOAL_TITLES = {
    "fitness": (
        "Run a half marathon 🏃",
        "Correr 5 km sin parar",
        "Courir un semi-marathon en moins de 2 h",
        "毎日1万歩歩く",
        "Push-ups: 100 in a row",
        "+10 push-ups every week",
        "-5 kg before summer",
        "Yoga 3×/week 🧘",
        "Schwimmen: 1 km Kraul",
        "المشي 30 دقيقة يومياً",
        "Swim across the lake 🏊\u200d♀️",
        "Deadlift 1.5× bodyweight",
    ),
    "learning": (
        "Learn 500 kanji 漢字",
        "Read 24 books this year 📚",
        "Aprender português — nível B2",
        "Finish the Rust book",
        "Lire « Les Misérables » en VO",
        "학습: 한국어 TOPIK II",
        "تعلم اللغة العربية",
        "ללמוד עברית",
        "=SUM(A1:A10) spreadsheet course",
        "Calculus: ∫ and ∑ without fear",
        "Piano: Für Elise 🎹",
        "Learn SQL window functions",
    ),
    "bible": (
        "Read the Bible in a year 📖",
        "Memorise Psalm 23",
        "Leer los Evangelios",
        "Lire les Psaumes",
        "聖書通読",
        "קריאת תהילים",
        "Study Romans chapter by chapter",
        "Pray daily 🙏",
        "Journal on Proverbs",
        "Lectio divina every morning",
    ),
    "work": (
        "Ship the Q3 roadmap 🚀",
        "Get AWS certified",
        "Reduce inbox to zero",
        "Lancer la nouvelle version",
        "Projekt „Atlas“ abschließen",
        "@team weekly sync notes",
        "Cut CI time by 50%",
        "新規顧客を10社獲得",
        "إطلاق المنتج الجديد",
        "Hire two engineers",
        "-20% cloud costs",
        "Write the design doc",
    ),
    "personal": (
        "Save €5,000 for travel ✈️",
        "Call grandma every Sunday ☎️",
        "Declutter the flat",
        "Meditar 10 minutos al día",
        "Apprendre à cuisiner le pain",
        "家族と過ごす時間を増やす",
        "Plant 20 trees 🌳",
        '=HYPERLINK("http://example.com","click me")',
        "+1 new friend a month",
        "Volunteer at the food bank",
        "قراءة كتاب كل شهر",
        "לחסוך לדירה",
    ),
}

_DESCRIPTIONS = (
    "Keep it simple.",
    "Step 1: plan\nStep 2: do\nStep 3: review",
    "Pourquoi ? Parce que c'est important pour moi.",
    "目標を達成するために毎日少しずつ進める。",
    "كل يوم خطوة صغيرة نحو الهدف.",
    "כל יום צעד קטן קדימה.",
    "Multi-line with Windows breaks:\r\nline two\r\nline three",
    'Quotes "inside", commas, and; semicolons',
    "=1+1",
    "+33 6 12 34 56 78 (coach)",
    "-- not a comment, just dashes",
    "@channel please review",
    "Tab\tseparated\tthoughts",
    "Emoji storm 🎉🔥💯👨\u200d👩\u200d👧\u200d👦🏳️\u200d🌈",
    "Combining accents: e\u0301te\u0301 (decomposed) vs été",
    "Path C:\\Users\\me\\goals.txt and a backslash \\",
    "Ünïcödé everywhere: Straße, naïve, façade, smörgåsbord",
    "한국어 설명: 꾸준함이 중요하다",
    "Musical 𝄞 and math 𝔸𝔹ℂ outside the BMP",
    "",
    "Very long description " + "lorem ipsum dolor sit amet " * 20,
    "<b>not html</b> & ampersands",
)

_PROGRESS_NOTES = (
    "Felt great 💪",
    "Rainy day, did it anyway ☔",
    "Knee hurts a bit.\nTake it easy tomorrow.",
    "Poco a poco",
    "Très bonne séance !",
    "今日は調子が良かった",
    "今天进步很大",
    "오늘도 화이팅",
    "يوم ممتاز",
    "יום מצוין",
    "=2+3",
    "+1 rep",
    "-2 kg 🎉",
    "@coach said keep going",
    "Line one\r\nLine two",
    "Missed yesterday; doubled today",
    '"Quoted" note, with comma',
    "",
    "Tired 😴",
    "Streak: 🔥🔥🔥",
)

_ACHIEVEMENTS = (  # (kind, title, points)
    ("first_goal", "First goal created 🎯", 10),
    ("first_goal", "Primera meta 🎉", 10),
    ("goal_completed", "Goal completed ✅", 50),
    ("goal_completed", "目標達成！", 50),
    ("goal_completed", "Objectif atteint", 50),
    ("streak", "🔥 7-day streak", 70),
    ("streak", "30 días seguidos", 300),
    ("streak", "سلسلة ١٠٠ يوم", 1000),
    ("milestone", "Halfway there", 25),
    ("milestone", "חצי הדרך", 25),
    ("milestone", "+100 progress entries", 100),
    ("perfect_week", "Perfect week ⭐", 150),
    ("early_bird", "Early bird 🐦", 20),
    ("bible_plan_finished", "Plan de lecture terminé 📖", 200),
    ("project_shipped", "Shipped! 🚀", 250),
)
_ACHIEVEMENT_DESCRIPTIONS = (
    "Awarded automatically.",
    "Bravo ! Continue comme ça.",
    "よくできました",
    "أحسنت!",
    "כל הכבוד!",
    '=IF(A1>0,"yes","no")',
    "Keep the streak alive 🔥\nSee you tomorrow.",
)

# (key, possible JSON values)
_SETTINGS = (
    ("theme", ('"dark"', '"light"', '"system"')),
    ("language", ('"en"', '"es-MX"', '"fr"', '"ja"', '"zh-Hans"', '"ar"', '"he"', '"pt-BR"')),
    (
        "notifications",
        (
            '{"email": true, "push": false, "digest": "weekly"}',
            '{"email": false, "push": true, "quietHours": ["22:00", "07:00"]}',
        ),
    ),
    ("weekStartsOn", ('"monday"', '"sunday"', '"saturday"')),
    ("units", ('"metric"', '"imperial"')),
    (
        "dashboard.layout",
        ('{"widgets": ["goals", "streak", "bible"], "compact": true}', '{"widgets": []}', "[]"),
    ),
    ("reminder.time", ('"07:30"', '"21:00"', "null")),
    ("utcOffsetMinutes", ("-300", "60", "540", "-210", "0")),
    ("privacy.shareProgress", ("true", "false")),
    ("export.defaultFormat", ('"json"', '"csv"', '"xlsx"', '"parquet"')),
    (
        "profile.motto",
        (
            '"Läufer 🏃\u200d♀️, 読書家, قارئ"',
            '"=HYPERLINK(\\"http://evil.example\\")"',
            '"Un día a la vez"',
            '"line one\\nline two"',
            '"@me"',
        ),
    ),
)

_PLAN_NAMES = (
    "Bible in a Year",
    "Evangelios en 30 días",
    "詩篇を読む",
    "תהילים כל יום",
    "Psalms & Proverbs 📖",
    "Lectio Divina — Carême",
    "The Gospel of John",
    "Paul's letters",
    "القراءة اليومية",
    "+ Advent readings",
)
_PLAN_DESCRIPTIONS = (
    "One chapter a day.",
    "Un capítulo por día, con oración.",
    "毎朝1章ずつ",
    "פרק אחד בכל יום",
    "Morning and evening\nwith a friend",
    "=Genesis!A1",
)
# (book, chapters)
_BOOKS = (
    ("Genesis", 50),
    ("Exodus", 40),
    ("Psalms", 150),
    ("Proverbs", 31),
    ("Isaiah", 66),
    ("Matthew", 28),
    ("Mark", 16),
    ("Luke", 24),
    ("John", 21),
    ("Acts", 28),
    ("Romans", 16),
    ("1 Corinthians", 16),
    ("Philippians", 4),
    ("James", 5),
    ("Revelation", 22),
)
_NOTE_TITLES = (
    "Grace",
    "La paix",
    "恵み",
    "חסד",
    "رحمة",
    "Faith & works",
    "=Psalm 23",
    "-> key verse",
)
_NOTE_CONTENTS = (
    "The Lord is my shepherd; I shall not want.",
    "יְהוָה רֹעִי לֹא אֶחְסָר",
    "主は私の羊飼い。私は乏しいことがない。",
    "الرب راعيّ فلا يعوزني شيء",
    "Reflection:\n- rest\n- trust\n- gratitude 🙏",
    "En el principio era el Verbo…",
    "Au commencement était la Parole.",
    "=SUM(verses)",
    "+ prayer list: Mom, Dad, Léa",
    "@small-group: discuss v.16",
    'Question: why "daily" bread?\r\nAnswer next week.',
    "Ἐν ἀρχῇ ἦν ὁ λόγος",
)
_NOTE_TAGS = (
    "faith,hope",
    "oração,família",
    "祈り",
    "אמונה,תקווה",
    "دعاء",
    "grace",
    "=tag",
    "love,joy,peace",
)

_PROJECT_NAMES = (
    "Website relaunch",
    "Migración a la nube ☁️",
    "Projet Atlas",
    "新製品ローンチ",
    "مشروع التطبيق",
    "פרויקט ענן",
    "Q4 planning",
    '=CONCAT("bud","get")',
    "+Growth experiments",
    "@acme onboarding",
    "Data warehouse 🏗️",
)
_PROJECT_STATUSES = ("planned", "active", "on_hold", "done")
_TASK_TITLES = (
    "Write spec",
    "Review PR #42",
    "Déployer en production",
    "テストを書く",
    "تحديث الوثائق",
    "לתקן באג",
    "=1+2 in the budget sheet",
    "-deprecated API removal",
    "@alice: sign-off",
    "+1 on the RFC",
    "Fix 🐛 in login",
    "Prepare slides",
    "Meet with client",
    "Update dependencies",
)
_TASK_NOTES = (
    "Blocked by infra.",
    "Checklist:\n[ ] tests\n[x] docs",
    "À faire avant vendredi",
    "月曜日までに",
    "ملاحظة مهمة",
    "הערה חשובה",
    '"quoted", with comma',
    "",
)
_TASK_STATUSES = ("todo", "doing", "done")
_GOAL_MAX_VALUES_CENTS = (10_000, 1_000, 4_220, 50_000, 100_000, 1_250, 500, 2_620, 25_000_000, 100)


def _pool(values) -> pa.Array:
    return pa.array(list(values), type=pa.string())


# ------------------------------------------------------------------------- vector helpers


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on 64-bit integers that scrambles every bit."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


_BASE36 = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
# Every two-digit combination as one uint16, so digits are looked up in pairs.
_BASE36_PAIRS = (
    np.stack([np.repeat(_BASE36, 36), np.tile(_BASE36, 36)], axis=1).view(np.uint16).ravel()
)


def _base36(values: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width base-36 digits of `values`, as an (n, width) array of ASCII bytes."""
    v = values.astype(np.uint64, copy=True)
    n_pairs, odd = divmod(width, 2)
    pairs = np.empty((n_pairs, len(v)), dtype=np.intp)
    base = np.uint64(36 * 36)
    for k in range(n_pairs - 1, -1, -1):  # `//` by a constant is fast, `divmod` is not
        quotient = v // base
        pairs[k] = v - quotient * base
        v = quotient
    digits = np.ascontiguousarray(_BASE36_PAIRS[pairs.T]).view(np.uint8)
    if odd:
        lead = _BASE36[(v - (v // np.uint64(36)) * np.uint64(36)).astype(np.intp)]
        digits = np.concatenate([lead[:, None], digits], axis=1)
    return digits


def _fixed_width_strings(chars: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    validity, null_count = None, 0
    if null is not None and null.any():
        validity, null_count = pa.array(~null).buffers()[1], int(null.sum())
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))]
    return pa.Array.from_buffers(pa.string(), n, buffers, null_count=null_count)


_TABLE_CODES = {name: i + 1 for i, name in enumerate(APP_TABLE_NAMES)}
_ID_WIDTH = 25
_MAX_USERS = 36**5
_MAX_ROWS_PER_USER = 36**4


class _Ids:
    """cuid-like ids (`c` + 24 base-36 characters) for one table's rows.

    Layout: 4 characters for the seed, 5 for the user's index, 1 for the table, 4 for the
    row's position among the user's rows, then 10 that mix all of it. Unique by
    construction within a seed. The seed part differs for any two seeds below 36**4, and
    the mixed part for any two seeds but for a 1 in 36**10 chance.

    Ids sort like (user, position): rows generated user by user are already in id order and
    in `userId` order, so a bulk load only ever appends to both indexes of every table.
    """

    def __init__(self, seed: int, table: str, user: np.ndarray, ordinal: np.ndarray):
        n = len(user)
        if n and int(user.max()) >= _MAX_USERS:
            raise ValueError(f"at most {_MAX_USERS} users can be generated")
        if n and int(ordinal.max()) >= _MAX_ROWS_PER_USER:
            raise ValueError(f"at most {_MAX_ROWS_PER_USER} {table} rows per user")
        seed_part = (seed * 1_000_003 + 20_261) % 36**4  # coprime with 36: a bijection
        identity = (
            (np.uint64(_TABLE_CODES[table]) << np.uint64(56))
            | (user.astype(np.uint64) << np.uint64(24))
            | ordinal.astype(np.uint64)
        )
        seed_key = _mix64(np.array([seed % 2**64], dtype=np.uint64))[0]
        chars = np.empty((n, _ID_WIDTH), dtype=np.uint8)
        chars[:, 0] = ord("c")
        chars[:, 1:5] = _base36(np.array([seed_part]), 4)[0]
        chars[:, 5:10] = _base36(user, 5)
        chars[:, 10] = _BASE36[_TABLE_CODES[table]]
        chars[:, 11:15] = _base36(ordinal, 4)
        chars[:, 15:] = _base36(_mix64(identity ^ seed_key) % np.uint64(36**10), 10)
        self.codes = chars.view(f"S{_ID_WIDTH}").ravel()
        self.array = _fixed_width_strings(chars)


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For groups of `counts` rows laid out one after another: each row's group, its
    position within the group, and each group's first row."""
    counts = counts.astype(np.int64)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    position = np.arange(len(owner), dtype=np.int64) - starts[owner]
    return owner, position, starts


def _per_user_ordinal(user_of_row: np.ndarray, n_users: int) -> np.ndarray:
    """Position of each row among its user's rows (rows are sorted by user)."""
    counts = np.bincount(user_of_row, minlength=n_users)
    starts = np.zeros(n_users, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return np.arange(len(user_of_row), dtype=np.int64) - starts[user_of_row]


def _pick(rng: np.random.Generator, n: int, pool_size: int) -> np.ndarray:
    return rng.integers(0, pool_size, size=n)


def _by_kind(
    pools: dict[str, tuple[str, ...]], kind: np.ndarray, rng
) -> tuple[pa.Array, np.ndarray]:
    """One pool of all kinds' texts, and for each row a random index into its kind's part."""
    sizes = np.asarray([len(pools[k]) for k in MODULE_KINDS])
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    idx = offsets[kind] + np.floor(rng.random(len(kind)) * sizes[kind]).astype(np.int64)
    return _pool(t for k in MODULE_KINDS for t in pools[k]), idx


def _refs(ids: _Ids, idx: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """References to rows of another table, by row index (NULL where `null`)."""
    # Ids are fixed-width: gathering them with numpy beats a variable-width string take.
    if len(ids.codes):
        picked = ids.codes[np.where(null, 0, idx) if null is not None else idx]
    else:  # nothing to refer to: every reference is NULL
        picked = np.zeros(len(idx), dtype=ids.codes.dtype)
    return _fixed_width_strings(picked.view(np.uint8).reshape(len(idx), _ID_WIDTH), null)


def _texts(pool: pa.Array, idx: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Texts picked from a pool by index (NULL where `null`)."""
    return pc.take(pool, pa.array(idx, type=pa.int64(), mask=null))


def _timestamps(ms: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """UTC timestamps from epoch milliseconds (the app's precision)."""
    return pa.array(ms.astype(np.int64) * 1000, type=pa.timestamp("us", tz="UTC"), mask=null)


def _dates(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=null)


def _ints(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(values.astype(np.int32), type=pa.int32(), mask=null)


def _bools(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.bool_())


def _decimals(
    table: str, column: str, cents: np.ndarray, null: np.ndarray | None = None
) -> pa.Array:
    """Exact decimals from their unscaled integer values (cents, for scale 2)."""
    cents = cents.astype(np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63  # sign extension to 128 bits
    validity, null_count = None, 0
    if null is not None and null.any():
        validity, null_count = pa.array(~null).buffers()[1], int(null.sum())
    kind = APP_ARROW_SCHEMAS[table].field(column).type
    return pa.Array.from_buffers(
        kind, len(cents), [validity, pa.py_buffer(words)], null_count=null_count
    )


def _day_of(ms: np.ndarray) -> np.ndarray:
    return ms // _MS_PER_DAY


def _between(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, power: float = 1.0
) -> np.ndarray:
    """Random millisecond instants in [lo, hi] (arrays), skewed towards lo when power > 1."""
    u = rng.random(len(lo)) ** power
    return lo + np.floor(u * np.maximum(hi - lo, 0)).astype(np.int64)


def _table(name: str, ids: _Ids, columns: dict[str, pa.Array]) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[name]
    columns = {"id": ids.array, **columns}
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _rng(seed: int, table: str) -> np.random.Generator:
    """One random stream per table, so that each table can be generated on its own."""
    return np.random.default_rng([_TABLE_CODES[table], seed])


def _heavy_users(n_users: int, heavy_every: int) -> np.ndarray:
    heavy = np.zeros(n_users, dtype=bool)
    if heavy_every:
        heavy[1::heavy_every] = True
    return heavy


# ------------------------------------------------------------------------- generation


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
    return _Ids(seed, "User", users, np.zeros(n_users, dtype=np.int64)).array


def _generate_users(seed, n, heavy, tables) -> dict[str, np.ndarray]:
    rng = _rng(seed, "User")
    users = np.arange(n, dtype=np.int64)
    created = _between(rng, np.full(n, _START_MS), np.full(n, _END_MS - 120 * _MS_PER_DAY))
    # Heavy users have been around since the start: years of daily progress.
    created[heavy] = _START_MS + _between(
        rng, np.zeros(heavy.sum(), np.int64), np.full(heavy.sum(), 30 * _MS_PER_DAY)
    )
    updated = _between(rng, created, np.full(n, _END_MS), power=3)
    person = _pick(rng, n, len(_PEOPLE))
    names = _pool(p[0] for p in _PEOPLE)
    stems = _pool(p[1] for p in _PEOPLE)
    domain = _pick(rng, n, len(_DOMAINS))
    # The user's index and the seed make every address unique, across seeds too.
    email = pc.binary_join_element_wise(
        _texts(stems, person),
        pa.array(np.char.add("u", users.astype(str)), type=pa.string()),
        pa.array(np.char.add(f"s{seed}@", np.asarray(_DOMAINS)[domain]), type=pa.string()),
        ".",
    )
    ids = _Ids(seed, "User", users, np.zeros(n, dtype=np.int64))
    tables["User"] = _table(
        "User",
        ids,
        {
            "email": email,
            "name": _texts(names, person, rng.random(n) < 0.04),
            "timezone": _texts(
                _pool(_TIMEZONES), _pick(rng, n, len(_TIMEZONES)), rng.random(n) < 0.08
            ),
            "createdAt": _timestamps(created),
            "updatedAt": _timestamps(updated),
        },
    )
    return {"id": ids, "created": created}


def _generate_modules(seed, n, heavy, users, tables) -> dict[str, np.ndarray]:
    rng = _rng(seed, "Module")
    include = rng.random((n, len(MODULE_KINDS))) < np.array([0.7, 0.6, 0.45, 0.55, 0.8])
    include[heavy] = True
    include[~include.any(axis=1), _KIND["personal"]] = True
    user_of, kind = np.nonzero(include)  # row-major: sorted by user, then kind
    m = len(user_of)
    counts = include.sum(axis=1)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    ordinal = np.arange(m) - starts[user_of]
    name_pool, name_idx = _by_kind(_MODULE_NAMES, kind, rng)
    created = _between(
        rng,
        users["created"][user_of],
        np.minimum(users["created"][user_of] + 30 * _MS_PER_DAY, _END_MS),
    )
    ids = _Ids(seed, "Module", user_of, ordinal)
    tables["Module"] = _table(
        "Module",
        ids,
        {
            "userId": _refs(users["id"], user_of),
            "kind": _texts(_pool(MODULE_KINDS), kind),
            "name": _texts(name_pool, name_idx),
            "isActive": _bools(rng.random(m) < 0.9),
            "createdAt": _timestamps(created),
        },
    )
    return {"id": ids, "user": user_of, "kind": kind, "start": starts, "count": counts}


def _generate_goals(seed, n, heavy, users, modules, tables) -> dict[str, np.ndarray]:
    rng = _rng(seed, "Goal")
    counts = rng.negative_binomial(2, 2 / 21, size=n) + 1
    counts[rng.random(n) < 0.03] = 0  # signed up, never set a goal
    counts[heavy] = HEAVY_USER_GOALS
    owner, ordinal, starts = _segments(counts)
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
    completed_at = _between(rng, created, np.full(g, _END_MS))
    updated = np.where(
        completed,
        _between(rng, completed_at, np.minimum(completed_at + 7 * _MS_PER_DAY, _END_MS)),
        _between(rng, created, np.full(g, _END_MS), power=2),
    )
    target_day = np.minimum(_day_of(created) + rng.integers(14, 400, size=g), _HORIZON_DAY)

    title_pool, title_idx = _by_kind(_GOAL_TITLES, kind, rng)
    ids = _Ids(seed, "Goal", owner, ordinal)
    tables["Goal"] = _table(
        "Goal",
        ids,
        {
            "userId": _refs(users["id"], owner),
            "moduleId": _refs(modules["id"], module_row, no_module),
            "parentGoalId": _refs(ids, parent, parent < 0),
            "title": _texts(title_pool, title_idx),
            "description": _texts(
                _pool(_DESCRIPTIONS), _pick(rng, g, len(_DESCRIPTIONS)), rng.random(g) < 0.35
            ),
            "priority": _ints(rng.integers(1, 6, size=g)),
            "difficulty": _ints(rng.integers(1, 6, size=g), rng.random(g) < 0.2),
            "targetDate": _dates(target_day, rng.random(g) < 0.3),
            "isCompleted": _bools(completed),
            "completedAt": _timestamps(completed_at, ~completed),
            "createdAt": _timestamps(created),
            "updatedAt": _timestamps(updated),
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
    rng = _rng(seed, "Progress")
    owner = goals["owner"]
    g = len(owner)
    counts = rng.negative_binomial(1.5, 1.5 / 10.2, size=g)  # mean 8.7
    is_heavy_goal = heavy[owner]
    counts[is_heavy_goal] = rng.poisson(110, size=int(is_heavy_goal.sum()))
    if is_heavy_goal.any():  # top up each heavy user's first goal to the minimum
        per_user = np.bincount(owner, weights=counts, minlength=n).astype(np.int64)
        deficit = np.maximum(HEAVY_USER_MIN_PROGRESS - per_user, 0) * heavy
        counts[goals["start"][heavy]] += deficit[heavy]
    goal_of, _, starts = _segments(counts)
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
        _pick(rng, g, len(_GOAL_MAX_VALUES_CENTS))
    ]
    open_scale = rng.integers(1_000, 500_000, size=g)  # open-ended counters: minutes, pages
    reach = np.where(goals["completed"], 1.0, rng.uniform(0.2, 0.95, size=g))
    level = np.clip(frac**0.8 * reach[goal_of] + rng.normal(0, 0.04, size=p), 0.0, 1.0)
    scale = np.where(has_max, max_cents, open_scale)[goal_of]
    value = np.floor(level * scale).astype(np.int64)
    last = ends - 1
    finished = (counts > 0) & goals["completed"] & has_max
    value[last[finished]] = max_cents[finished]  # a completed goal ends at its maximum

    tables["Progress"] = _table(
        "Progress",
        _Ids(seed, "Progress", user_of, _per_user_ordinal(user_of, n)),
        {
            "userId": _refs(goals["user_id"], user_of),
            "goalId": _refs(goals["id"], goal_of),
            "value": _decimals("Progress", "value", value),
            "maxValue": _decimals(
                "Progress",
                "maxValue",
                max_cents[goal_of],
                ~has_max[goal_of],
            ),
            "notes": _texts(
                _pool(_PROGRESS_NOTES), _pick(rng, p, len(_PROGRESS_NOTES)), rng.random(p) < 0.75
            ),
            "recordedAt": _timestamps(recorded),
        },
    )


def _random_row_of_user(rng, user_of_row, start, count) -> tuple[np.ndarray, np.ndarray]:
    """For each row, a random row (index) among its user's rows in another table; -1 and a
    missing flag where the user has none."""
    c = count[user_of_row]
    pick = start[user_of_row] + np.floor(rng.random(len(user_of_row)) * c).astype(np.int64)
    missing = c == 0
    return np.where(missing, -1, pick), missing


def _generate_achievements(seed, n, heavy, users, goals, tables) -> None:
    rng = _rng(seed, "Achievement")
    counts = np.where(goals["count"] > 0, rng.poisson(3, size=n), rng.integers(0, 2, size=n))
    counts[heavy] = 40
    user_of, ordinal, _ = _segments(counts)
    a = len(user_of)
    goal, no_goal = _random_row_of_user(rng, user_of, goals["start"], goals["count"])
    no_goal |= rng.random(a) < 0.4
    goal_safe = np.where(no_goal, 0, goal)
    entry = _pick(rng, a, len(_ACHIEVEMENTS))
    if len(goals["id"].codes):
        goal_created = goals["created"][goal_safe]
        earned_for_goal = np.where(
            goals["completed"][goal_safe],
            goals["completed_at"][goal_safe],
            _between(rng, goal_created, np.full(a, _END_MS)),
        )
    else:
        earned_for_goal = np.zeros(a, dtype=np.int64)
    earned = np.where(
        no_goal, _between(rng, users["created"][user_of], np.full(a, _END_MS)), earned_for_goal
    )
    tables["Achievement"] = _table(
        "Achievement",
        _Ids(seed, "Achievement", user_of, ordinal),
        {
            "userId": _refs(users["id"], user_of),
            "goalId": _refs(goals["id"], goal_safe, no_goal),
            "kind": _texts(_pool(k for k, _, _ in _ACHIEVEMENTS), entry),
            "title": _texts(_pool(t for _, t, _ in _ACHIEVEMENTS), entry),
            "description": _texts(
                _pool(_ACHIEVEMENT_DESCRIPTIONS),
                _pick(rng, a, len(_ACHIEVEMENT_DESCRIPTIONS)),
                rng.random(a) < 0.3,
            ),
            "points": _ints(np.asarray([pts for _, _, pts in _ACHIEVEMENTS])[entry]),
            "earnedAt": _timestamps(earned),
        },
    )


def _generate_settings(seed, n, heavy, users, tables) -> None:
    rng = _rng(seed, "UserSetting")
    include = rng.random((n, len(_SETTINGS))) < 0.6
    include[heavy] = True
    user_of, key = np.nonzero(include)  # each key at most once per user
    s = len(user_of)
    ordinal = _per_user_ordinal(user_of, n)
    width = max(len(values) for _, values in _SETTINGS)
    value_pool = _pool(values[i % len(values)] for _, values in _SETTINGS for i in range(width))
    value_count = np.asarray([len(values) for _, values in _SETTINGS])
    value_idx = key * width + np.floor(rng.random(s) * value_count[key]).astype(np.int64)
    updated = _between(rng, users["created"][user_of], np.full(s, _END_MS))
    tables["UserSetting"] = _table(
        "UserSetting",
        _Ids(seed, "UserSetting", user_of, ordinal),
        {
            "userId": _refs(users["id"], user_of),
            "key": _texts(_pool(k for k, _ in _SETTINGS), key),
            "value": _texts(value_pool, value_idx, rng.random(s) < 0.05),
            "updatedAt": _timestamps(updated),
        },
    )


def _generate_bible(seed, n, heavy, users, modules, tables) -> None:
    rng = _rng(seed, "BibleReadingPlan")
    has_bible = np.zeros(n, dtype=bool)
    has_bible[modules["user"][modules["kind"] == _KIND["bible"]]] = True

    plan_counts = np.where(has_bible, rng.integers(1, 4, size=n), 0)
    plan_counts[heavy] = 4
    plan_user, plan_ordinal, _ = _segments(plan_counts)
    pl = len(plan_user)
    plan_created = _between(
        rng, users["created"][plan_user], np.full(pl, _END_MS - 30 * _MS_PER_DAY)
    )
    # Starts the day after it was created at the earliest, so readings come after creation.
    start_day = _day_of(plan_created) + rng.integers(1, 15, size=pl)
    length = rng.integers(30, 366, size=pl)
    end_day = np.minimum(start_day + length, _HORIZON_DAY)
    plan_ids = _Ids(seed, "BibleReadingPlan", plan_user, plan_ordinal)
    tables["BibleReadingPlan"] = _table(
        "BibleReadingPlan",
        plan_ids,
        {
            "userId": _refs(users["id"], plan_user),
            "name": _texts(_pool(_PLAN_NAMES), _pick(rng, pl, len(_PLAN_NAMES))),
            "description": _texts(
                _pool(_PLAN_DESCRIPTIONS),
                _pick(rng, pl, len(_PLAN_DESCRIPTIONS)),
                rng.random(pl) < 0.3,
            ),
            "startDate": _dates(start_day),
            "endDate": _dates(end_day, rng.random(pl) < 0.2),
            "createdAt": _timestamps(plan_created),
        },
    )

    reading_counts = np.minimum(rng.integers(3, 16, size=pl), length)
    reading_counts[heavy[plan_user]] = np.minimum(300, length[heavy[plan_user]])
    reading_counts = np.minimum(reading_counts, _HORIZON_DAY - start_day + 1)
    plan_of, day_in_plan, _ = _segments(reading_counts)
    r = len(plan_of)
    reading_user = plan_user[plan_of]
    book_of_plan = _pick(rng, pl, len(_BOOKS))
    first_chapter = np.floor(
        rng.random(pl) * np.asarray([c for _, c in _BOOKS])[book_of_plan]
    ).astype(np.int64)
    book = book_of_plan[plan_of]
    chapters_in_book = np.asarray([c for _, c in _BOOKS])[book]
    chapter = (first_chapter[plan_of] + day_in_plan) % chapters_in_book + 1
    verse_start = rng.integers(1, 21, size=r)
    no_verses = rng.random(r) < 0.5
    scheduled_day = start_day[plan_of] + day_in_plan
    scheduled_ms = scheduled_day * _MS_PER_DAY
    done = (scheduled_ms + 3 * _MS_PER_DAY < _END_MS) & (rng.random(r) < 0.75)
    completed = scheduled_ms + rng.integers(6 * 3_600_000, 72 * 3_600_000, size=r)
    reading_ids = _Ids(seed, "BibleReading", reading_user, _per_user_ordinal(reading_user, n))
    book_pool = _pool(b for b, _ in _BOOKS)
    tables["BibleReading"] = _table(
        "BibleReading",
        reading_ids,
        {
            "userId": _refs(users["id"], reading_user),
            "planId": _refs(plan_ids, plan_of),
            "book": _texts(book_pool, book),
            "chapter": _ints(chapter),
            "verseStart": _ints(verse_start, no_verses),
            "verseEnd": _ints(verse_start + rng.integers(0, 16, size=r), no_verses),
            "scheduledDate": _dates(scheduled_day, rng.random(r) < 0.03),
            "completedAt": _timestamps(completed, ~done),
        },
    )

    reading_start = np.zeros(n, dtype=np.int64)
    reading_count = np.bincount(reading_user, minlength=n)
    np.cumsum(reading_count[:-1], out=reading_start[1:])
    note_counts = np.where(has_bible, rng.poisson(6, size=n), 0)
    note_counts[heavy] = 60
    note_user, note_ordinal, _ = _segments(note_counts)
    nn = len(note_user)
    reading, unlinked = _random_row_of_user(rng, note_user, reading_start, reading_count)
    unlinked |= rng.random(nn) < 0.3
    reading_safe = np.where(unlinked, 0, reading)
    # A note on a reading is about that reading's passage, written after the plan began.
    random_book = _pick(rng, nn, len(_BOOKS))
    random_chapter = (
        np.floor(rng.random(nn) * np.asarray([c for _, c in _BOOKS])[random_book]).astype(np.int64)
        + 1
    )
    if r:
        note_book = np.where(unlinked, random_book, book[reading_safe])
        note_chapter = np.where(unlinked, random_chapter, chapter[reading_safe])
        since = np.where(unlinked, users["created"][note_user], plan_created[plan_of[reading_safe]])
    else:
        note_book, note_chapter, since = random_book, random_chapter, users["created"][note_user]
    created = _between(rng, since, np.full(nn, _END_MS))
    tables["BibleStudyNote"] = _table(
        "BibleStudyNote",
        _Ids(seed, "BibleStudyNote", note_user, note_ordinal),
        {
            "userId": _refs(users["id"], note_user),
            "readingId": _refs(reading_ids, reading_safe, unlinked),
            "book": _texts(book_pool, note_book),
            "chapter": _ints(note_chapter),
            "verse": _ints(rng.integers(1, 30, size=nn), rng.random(nn) < 0.4),
            "title": _texts(
                _pool(_NOTE_TITLES), _pick(rng, nn, len(_NOTE_TITLES)), rng.random(nn) < 0.3
            ),
            "content": _texts(_pool(_NOTE_CONTENTS), _pick(rng, nn, len(_NOTE_CONTENTS))),
            "tags": _texts(
                _pool(_NOTE_TAGS), _pick(rng, nn, len(_NOTE_TAGS)), rng.random(nn) < 0.35
            ),
            "createdAt": _timestamps(created),
            "updatedAt": _timestamps(_between(rng, created, np.full(nn, _END_MS), power=3)),
        },
    )


def _generate_work(seed, n, heavy, users, modules, goals, tables) -> None:
    rng = _rng(seed, "WorkProject")
    has_work = np.zeros(n, dtype=bool)
    has_work[modules["user"][modules["kind"] == _KIND["work"]]] = True
    project_counts = np.where(has_work, rng.integers(1, 5, size=n), 0)
    project_counts[heavy] = 10
    project_user, project_ordinal, _ = _segments(project_counts)
    pj = len(project_user)
    goal, no_goal = _random_row_of_user(rng, project_user, goals["start"], goals["count"])
    no_goal |= rng.random(pj) < 0.5
    created = _between(rng, users["created"][project_user], np.full(pj, _END_MS - 7 * _MS_PER_DAY))
    updated = _between(rng, created, np.full(pj, _END_MS), power=2)
    status = _pick(rng, pj, len(_PROJECT_STATUSES))
    start_day = _day_of(created) + rng.integers(0, 30, size=pj)
    due_day = np.minimum(start_day + rng.integers(14, 365, size=pj), _HORIZON_DAY)
    budget = rng.integers(0, 25_000_000, size=pj) * np.where(rng.random(pj) < 0.5, 100, 1)
    project_ids = _Ids(seed, "WorkProject", project_user, project_ordinal)
    tables["WorkProject"] = _table(
        "WorkProject",
        project_ids,
        {
            "userId": _refs(users["id"], project_user),
            "goalId": _refs(goals["id"], np.where(no_goal, 0, goal), no_goal),
            "name": _texts(_pool(_PROJECT_NAMES), _pick(rng, pj, len(_PROJECT_NAMES))),
            "description": _texts(
                _pool(_DESCRIPTIONS), _pick(rng, pj, len(_DESCRIPTIONS)), rng.random(pj) < 0.4
            ),
            "status": _texts(_pool(_PROJECT_STATUSES), status),
            "budget": _decimals("WorkProject", "budget", budget, rng.random(pj) < 0.4),
            "startDate": _dates(start_day, rng.random(pj) < 0.15),
            "dueDate": _dates(due_day, rng.random(pj) < 0.3),
            "createdAt": _timestamps(created),
            "updatedAt": _timestamps(updated),
        },
    )

    task_counts = rng.integers(1, 9, size=pj)
    task_counts[heavy[project_user]] = 60
    project_of, _, _ = _segments(task_counts)
    t = len(project_of)
    task_user = project_user[project_of]
    task_status = _pick(rng, t, len(_TASK_STATUSES))
    task_status[status[project_of] == _PROJECT_STATUSES.index("done")] = _TASK_STATUSES.index(
        "done"
    )
    done = task_status == _TASK_STATUSES.index("done")
    task_created = _between(rng, created[project_of], np.full(t, _END_MS - _MS_PER_DAY))
    completed = _between(rng, task_created, np.full(t, _END_MS))
    due = np.minimum(
        task_created + rng.integers(_MS_PER_DAY, 60 * _MS_PER_DAY, size=t), _HORIZON_MS
    )
    estimate = rng.integers(1, 321, size=t) * 25  # quarter hours, in hundredths
    tables["WorkTask"] = _table(
        "WorkTask",
        _Ids(seed, "WorkTask", task_user, _per_user_ordinal(task_user, n)),
        {
            "userId": _refs(users["id"], task_user),
            "projectId": _refs(project_ids, project_of),
            "title": _texts(_pool(_TASK_TITLES), _pick(rng, t, len(_TASK_TITLES))),
            "notes": _texts(
                _pool(_TASK_NOTES), _pick(rng, t, len(_TASK_NOTES)), rng.random(t) < 0.5
            ),
            "status": _texts(_pool(_TASK_STATUSES), task_status),
            "priority": _ints(rng.integers(1, 6, size=t)),
            "estimateHours": _decimals(
                "WorkTask",
                "estimateHours",
                estimate,
                rng.random(t) < 0.3,
            ),
            "dueAt": _timestamps(due, rng.random(t) < 0.4),
            "completedAt": _timestamps(completed, ~done),
            "createdAt": _timestamps(task_created),
        },
    )


# ------------------------------------------------------------------------- loading


def load_population(
    engine: sa.Engine, tables: dict[str, pa.Table], *, defer_foreign_keys: bool | None = None
) -> dict[str, int]:
    """Insert the tables (parents first) in one transaction; returns rows loaded per table.

    PostgreSQL gets binary COPY encoded straight from Arrow (no Python object per value).
    With `defer_foreign_keys` (by default: above 200,000 rows) the loaded tables' foreign
    keys are dropped for the load and re-created, each validated by one join, before the
    commit: per-row checks would cost more than the load itself. That locks the app's tables
    for the load, so it is for seeding, not for a database in use.

    SQLite gets executemany of values already in SQLAlchemy's storage format for SQLite (the
    format its queries compare against); other databases, executemany through SQLAlchemy.
    """
    unknown = set(tables) - set(APP_TABLE_NAMES)
    if unknown:
        raise ValueError(f"not app tables: {sorted(unknown)}")
    ordered = [t for t in APP_TABLES if t.name in tables]
    for t in ordered:
        got = [(f.name, f.type) for f in tables[t.name].schema]
        want = [(f.name, f.type) for f in APP_ARROW_SCHEMAS[t.name]]
        if got != want:
            raise ValueError(
                f"table {t.name} has columns {got}, expected the app's {want} (same order)"
            )
    if engine.dialect.name == "postgresql":
        if defer_foreign_keys is None:
            defer_foreign_keys = sum(tables[t.name].num_rows for t in ordered) > _BULK_ROWS
        _load_postgres(engine, [(t.name, tables[t.name]) for t in ordered], defer_foreign_keys)
    elif engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            for t in ordered:
                columns = ", ".join(f'"{c}"' for c in tables[t.name].column_names)
                marks = ", ".join("?" for _ in tables[t.name].column_names)
                statement = f'INSERT INTO "{t.name}" ({columns}) VALUES ({marks})'
                for batch in tables[t.name].to_batches(max_chunksize=50_000):
                    if batch.num_rows:
                        conn.exec_driver_sql(statement, _sqlite_rows(batch))
    else:
        with engine.begin() as conn:
            for t in ordered:
                for batch in tables[t.name].to_batches(max_chunksize=50_000):
                    if batch.num_rows:
                        conn.execute(t.insert(), batch.to_pylist())
    return {t.name: tables[t.name].num_rows for t in ordered}


def _sqlite_rows(batch: pa.RecordBatch) -> list[tuple]:
    """Rows as SQLAlchemy stores them in SQLite: timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff'
    (UTC), dates as 'YYYY-MM-DD', decimals as floats, booleans as 0/1."""
    columns = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_timestamp(kind):
            column = pc.strftime(column, format="%Y-%m-%d %H:%M:%S")  # %S carries the micros
        elif pa.types.is_date32(kind):
            column = pc.strftime(column, format="%Y-%m-%d")
        elif pa.types.is_decimal(kind):
            column = column.cast(pa.float64())
        elif pa.types.is_boolean(kind):
            column = column.cast(pa.int8())
        columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


_BULK_ROWS = 200_000
_COPY_BATCH_ROWS = 65_536


def _load_postgres(
    engine: sa.Engine, tables: list[tuple[str, pa.Table]], defer_foreign_keys: bool
) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        foreign_keys = []
        if defer_foreign_keys:
            foreign_keys = _drop_foreign_keys(cursor, [name for name, _ in tables])
        step = ""
        try:
            for name, table in tables:
                if table.num_rows:
                    step = f"loading {name}"
                    columns = ", ".join(f'"{c}"' for c in table.column_names)
                    statement = f'COPY "{name}" ({columns}) FROM STDIN (FORMAT binary)'
                    _copy_binary(raw, cursor, statement, table)
            for table_name, constraint, definition in foreign_keys:
                step = f"checking {table_name}'s foreign key {constraint}"
                cursor.execute(
                    f'ALTER TABLE "{table_name}" ADD CONSTRAINT "{constraint}" {definition}'
                )
        except engine.dialect.loaded_dbapi.Error as error:
            detail = " ".join(str(error).split())
            raise ValueError(f"{step} failed, nothing was loaded: {detail}") from error
        cursor.close()
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _copy_binary(raw, cursor, statement: str, table: pa.Table) -> None:
    blocks = _pg_binary_copy_blocks(table)
    if type(raw.driver_connection).__module__.startswith("psycopg2"):
        cursor.copy_expert(statement, _BlockReader(blocks))
        return
    from psycopg.copy import QueuedLibpqWriter

    # The queued writer sends from a thread while the next block is encoded.
    with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
        for block in blocks:
            copy.write(block)


class _BlockReader(io.RawIOBase):
    """A file over an iterator of byte blocks, for psycopg2's `copy_expert`."""

    def __init__(self, blocks):
        self._blocks = iter(blocks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(block).cast("B")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


# PostgreSQL's binary COPY format: a signature, flags and header-extension length; per row a
# 16-bit field count, then per field a 32-bit length (-1 for NULL) and the value in the
# type's binary send format (big-endian); a -1 field count ends the data.
_PG_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_PG_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in Unix microseconds
_PG_EPOCH_DAYS = 10_957


def _pg_binary_copy_blocks(table: pa.Table):
    """The table as PostgreSQL binary COPY data, in blocks of bytes-like objects.

    Each column becomes, per row, a length header and a value (both as Arrow binary arrays
    built with numpy); Arrow's element-wise binary join then lays them out row by row.
    """
    yield _PG_COPY_SIGNATURE
    for batch in table.to_batches(max_chunksize=_COPY_BATCH_ROWS):
        n = batch.num_rows
        field_count = np.full(n, batch.num_columns, dtype=">i2").view(np.uint8).reshape(n, 2)
        parts = [_fixed_width_binary(field_count, None)]
        for column in batch.columns:
            parts.extend(_pg_binary_fields(column))
        rows = pc.binary_join_element_wise(
            *parts, b"", null_handling="replace", null_replacement=b""
        )
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)
        yield rows.buffers()[2][offsets[rows.offset] : offsets[rows.offset + n]]
    yield _PG_COPY_TRAILER


def _fixed_width_binary(data: np.ndarray, null: np.ndarray | None) -> pa.Array:
    n, width = data.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    validity, null_count = None, 0
    if null is not None and null.any():
        validity, null_count = pa.array(~null).buffers()[1], int(null.sum())
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    return pa.Array.from_buffers(pa.binary(), n, buffers, null_count=null_count)


def _pg_binary_fields(column: pa.Array) -> list[pa.Array]:
    """[length headers, values] of one column in PostgreSQL's binary format."""
    n = len(column)
    null = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        values = column.cast(pa.binary())
        lengths = pc.fill_null(pc.binary_length(values), 0).to_numpy()
        return [_pg_lengths(lengths, null), values]
    if pa.types.is_timestamp(kind):
        if kind.unit != "us":
            raise ValueError(f"binary COPY needs microsecond timestamps, got {kind}")
        micros = pc.fill_null(column.cast(pa.int64()), 0).to_numpy() - _PG_EPOCH_US
        data = micros.astype(">i8").view(np.uint8).reshape(n, 8)
    elif pa.types.is_date32(kind):
        days = pc.fill_null(column.cast(pa.int32()), 0).to_numpy() - _PG_EPOCH_DAYS
        data = days.astype(">i4").view(np.uint8).reshape(n, 4)
    elif pa.types.is_int32(kind):
        data = pc.fill_null(column, 0).to_numpy().astype(">i4").view(np.uint8).reshape(n, 4)
    elif pa.types.is_int64(kind):
        data = pc.fill_null(column, 0).to_numpy().astype(">i8").view(np.uint8).reshape(n, 8)
    elif pa.types.is_boolean(kind):
        data = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
        data = data.astype(np.uint8).reshape(n, 1)
    elif pa.types.is_decimal128(kind) and kind.precision <= 18:
        data = _pg_numeric(column, kind)
    else:
        raise ValueError(f"no binary COPY encoding for Arrow type {kind}")
    return [_pg_lengths(np.full(n, data.shape[1]), null), _fixed_width_binary(data, null)]


def _pg_lengths(lengths: np.ndarray, null: np.ndarray | None) -> pa.Array:
    headers = lengths.astype(">i4")
    if null is not None:
        headers[null] = -1
    return _fixed_width_binary(headers.view(np.uint8).reshape(-1, 4), None)


def _pg_numeric(column: pa.Array, kind: pa.Decimal128Type) -> np.ndarray:
    """PostgreSQL's numeric send format, at a fixed number of base-10000 digits per type
    (PostgreSQL strips the leading and trailing zero digits on receipt)."""
    n = len(column)
    # precision <= 18: the unscaled value is the low 64-bit word of each 128-bit value.
    words = np.frombuffer(column.buffers()[1], dtype=np.int64).reshape(-1, 2)
    unscaled = words[column.offset : column.offset + n, 0]
    fraction_digits = -(-kind.scale // 4)
    integer_digits = -(-(kind.precision - kind.scale) // 4)
    digits = fraction_digits + integer_digits
    rest = np.abs(unscaled) * 10 ** (4 * fraction_digits - kind.scale)
    record = np.empty((n, 4 + digits), dtype=">i2")
    record[:, 0] = digits
    record[:, 1] = integer_digits - 1  # weight of the first digit
    record[:, 2] = np.where(unscaled < 0, 0x4000, 0)
    record[:, 3] = kind.scale
    for i in range(digits - 1, -1, -1):
        quotient = rest // 10_000
        record[:, 4 + i] = rest - quotient * 10_000
        rest = quotient
    return record.view(np.uint8).reshape(n, 2 * (4 + digits))


def _drop_foreign_keys(cursor, table_names: list[str]) -> list[tuple[str, str, str]]:
    """Drop the foreign keys of these tables (inside the load's transaction) and return
    what re-creates them."""
    cursor.execute(
        "SELECT c.relname, con.conname, pg_get_constraintdef(con.oid) "
        "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
        "JOIN pg_namespace ns ON ns.oid = c.relnamespace "
        "WHERE con.contype = 'f' AND ns.nspname = current_schema() AND c.relname = ANY(%s) "
        "ORDER BY c.relname, con.conname",
        (table_names,),
    )
    foreign_keys = [tuple(row) for row in cursor.fetchall()]
    for table_name, constraint, _ in foreign_keys:
        cursor.execute(f'ALTER TABLE "{table_name}" DROP CONSTRAINT "{constraint}"')
    return foreign_keys


def seed_database(
    database_url: str, n_users: int, seed: int = 0, heavy_every: int = 2000
) -> dict[str, int]:
    """Migrate the database, generate `n_users` users and load them; returns rows per table.

    Refuses (ValueError) when the database already holds users this seed would create.
    """
    from migrations import upgrade

    upgrade(database_url)
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        _refuse_existing_users(engine, n_users, seed)
        tables = generate_population(n_users, seed=seed, heavy_every=heavy_every)
        counts = load_population(engine, tables)
        if engine.dialect.name == "postgresql" and sum(counts.values()) > _BULK_ROWS:
            # Fresh statistics, so the first extraction is planned for the new row counts.
            names = ", ".join(f'"{name}"' for name in counts)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f"ANALYZE {names}"))
        return counts
    finally:
        engine.dispose()


def _refuse_existing_users(engine: sa.Engine, n_users: int, seed: int) -> None:
    from resources.schema import user

    ids = generated_user_ids(n_users, seed).to_pylist()
    clashes = 0
    example = None
    with engine.connect() as conn:
        for i in range(0, len(ids), 10_000):
            chunk = ids[i : i + 10_000]
            found = conn.execute(sa.select(user.c.id).where(user.c.id.in_(chunk))).scalars().all()
            clashes += len(found)
            example = example or (found[0] if found else None)
    if clashes:
        raise ValueError(
            f"the database already has {clashes} of the {n_users} users that seed {seed} "
            f"generates (User.id {example!r} among them); seed an empty database, "
            f"or choose another --seed"
        )
