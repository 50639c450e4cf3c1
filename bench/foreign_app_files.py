"""Large exports of Microsoft To Do, Remember The Milk, Taskwarrior and Toodledo for the
foreign-import benchmark, shaped like the tests' fixtures (lists or projects, sub-items,
notes, tags, repeats, completed and deleted items), and the measurement of one parse.

`parse_measured(app, tasks)` runs in a child process of its own (`bench.run.in_child`),
so each app's peak memory is its own.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import time
import zipfile

APPS = ("microsoft_todo", "remember_the_milk", "taskwarrior", "toodledo")
START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
WORDS = "plan call write buy fix read clean book send check review pay move 東京 café 🙂".split()


def _title(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))


def _moment(rng: random.Random) -> dt.datetime:
    return START + dt.timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))


def taskwarrior_export(tasks: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    projects = [f"Area{a}.Project{p}" for a in range(20) for p in range(10)]
    out = []
    n = 0
    while n < tasks:
        entry = _moment(rng)
        task = {
            "id": n + 1,
            "uuid": f"{n:08x}-0000-4000-8000-{seed:012x}",
            "description": _title(rng),
            "status": rng.choices(["pending", "completed", "deleted", "waiting"], [6, 3, 0.3, 0.7])[
                0
            ],
            "entry": entry.strftime("%Y%m%dT%H%M%SZ"),
            "modified": (entry + dt.timedelta(days=2)).strftime("%Y%m%dT%H%M%SZ"),
            "project": rng.choice(projects),
            "tags": rng.sample(WORDS, 2),
            "urgency": round(rng.random() * 10, 2),
        }
        if task["status"] == "completed":
            task["end"] = (entry + dt.timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
        if rng.random() < 0.2:
            task["annotations"] = [{"entry": task["entry"], "description": _title(rng)}]
        if n and rng.random() < 0.05:
            task["depends"] = [out[rng.randrange(len(out))]["uuid"]]
        out.append(task)
        n += 1
        if rng.random() < 0.01 and n + 5 <= tasks:  # a recurring template and its instances
            task["status"], task["recur"], task["mask"] = "recurring", "weekly", "+++-"
            for week in range(4):
                out.append(
                    {
                        "uuid": f"{n:08x}-0000-4000-8000-{seed:012x}",
                        "description": task["description"],
                        "status": "completed" if week < 3 else "pending",
                        "entry": task["entry"],
                        "due": (entry + dt.timedelta(weeks=week)).strftime("%Y%m%dT%H%M%SZ"),
                        "parent": task["uuid"],
                        "imask": week,
                    }
                )
                n += 1
    return json.dumps(out, ensure_ascii=False).encode()


def microsoft_todo_export(tasks: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    list_ids = [f"AAMkList{i:04d}=" for i in range(50)]
    pages: dict[str, object] = {
        "lists.json": {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#me/todo/lists",
            "value": [
                {"id": i, "displayName": _title(rng), "wellknownListName": "none"} for i in list_ids
            ],
        }
    }
    per_list = -(-tasks // len(list_ids))
    made = 0
    for list_id in list_ids:
        batch = []
        for _ in range(min(per_list, tasks - made)):
            created = _moment(rng)
            done = rng.random() < 0.3
            task = {
                "id": f"AAkTask{made:08d}",
                "title": _title(rng),
                "importance": rng.choice(["low", "normal", "high"]),
                "status": "completed" if done else "notStarted",
                "createdDateTime": created.isoformat().replace("+00:00", "Z"),
                "lastModifiedDateTime": (created + dt.timedelta(days=1))
                .isoformat()
                .replace("+00:00", "Z"),
                "body": {"content": f"<p>{_title(rng)}</p>", "contentType": "html"},
                "categories": rng.sample(WORDS, 1),
                "dueDateTime": {
                    "dateTime": (created + dt.timedelta(days=7)).strftime(
                        "%Y-%m-%dT00:00:00.0000000"
                    ),
                    "timeZone": rng.choice(["UTC", "W. Europe Standard Time", "Europe/Paris"]),
                },
            }
            if done:
                task["completedDateTime"] = {
                    "dateTime": (created + dt.timedelta(days=1)).strftime(
                        "%Y-%m-%dT00:00:00.0000000"
                    ),
                    "timeZone": "UTC",
                }
            if rng.random() < 0.2:
                task["checklistItems"] = [
                    {"id": f"step{made}-{k}", "displayName": _title(rng), "isChecked": k == 0}
                    for k in range(2)
                ]
            batch.append(task)
            made += 1
        for page, start in enumerate(range(0, len(batch), 100)):
            pages[f"lists/{list_id}/tasks-{page}.json"] = {
                "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#me/todo/lists('{list_id}')/tasks",
                "value": batch[start : start + 100],
            }
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, doc in pages.items():
            archive.writestr(f"todo/{name}", json.dumps(doc, ensure_ascii=False))
    return sink.getvalue()


def remember_the_milk_export(tasks: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    ms = lambda moment: int(moment.timestamp() * 1000)  # noqa: E731
    lists = [
        {"id": str(41000000 + i), "name": _title(rng), "date_created": ms(START)} for i in range(50)
    ]
    records, notes = [], []
    for n in range(tasks):
        created = _moment(rng)
        series = str(60000000 + (n if rng.random() > 0.05 or n == 0 else n - 1))
        record = {
            "id": str(70000000 + n),
            "series_id": series,
            "list_id": rng.choice(lists)["id"],
            "name": _title(rng),
            "priority": rng.choice(["P1", "P2", "P3", "PN"]),
            "date_created": ms(created),
            "date_added": ms(created),
            "date_modified": ms(created + dt.timedelta(hours=3)),
            "date_due": ms(created + dt.timedelta(days=5)),
            "tags": rng.sample(WORDS, 2),
        }
        if rng.random() < 0.3:
            record["date_completed"] = ms(created + dt.timedelta(days=1))
        if rng.random() < 0.02:
            record["date_trashed"] = ms(created + dt.timedelta(days=2))
        if n > 10 and rng.random() < 0.1:
            record["parent_id"] = str(70000000 + rng.randrange(n - 10))
        if rng.random() < 0.2:
            notes.append({"id": str(80000000 + n), "series_id": series, "content": _title(rng)})
        records.append(record)
    return json.dumps(
        {"lists": lists, "tasks": records, "notes": notes}, ensure_ascii=False
    ).encode()


def toodledo_export(tasks: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    goals = [_title(rng) for _ in range(100)]
    header = ["TASK", "FOLDER", "CONTEXT", "GOAL", "DUEDATE", "DUETIME", "REPEAT", "PRIORITY"]
    header += ["TAG", "STATUS", "STAR", "NOTE", "ADDED", "MODIFIED", "COMPLETED"]
    sink = io.StringIO(newline="")
    writer = csv.writer(sink, lineterminator="\r\n")
    writer.writerow(header)
    for _ in range(tasks):
        added = _moment(rng)
        done = rng.random() < 0.3
        writer.writerow(
            [
                _title(rng),
                rng.choice(["Home", "Work", "Errands"]),
                rng.choice(["@home", "@phone", ""]),
                rng.choice(goals) if rng.random() < 0.7 else "",
                (added + dt.timedelta(days=9)).date().isoformat(),
                rng.choice(["", "5:00pm", "09:30"]),
                rng.choice(["None", "Weekly"]),
                str(rng.randint(-1, 3)),
                ", ".join(rng.sample(WORDS, 2)),
                rng.choice(["None", "Next Action", "Waiting"]),
                rng.choice(["Yes", "No"]),
                _title(rng) + "\n" + _title(rng),
                added.date().isoformat(),
                (added + dt.timedelta(days=1)).date().isoformat(),
                (added + dt.timedelta(days=2)).date().isoformat() if done else "",
            ]
        )
    return ("\ufeff" + sink.getvalue()).encode()


GENERATORS = {
    "microsoft_todo": microsoft_todo_export,
    "remember_the_milk": remember_the_milk_export,
    "taskwarrior": taskwarrior_export,
    "toodledo": toodledo_export,
}


def parse_measured(app: str, tasks: int) -> dict:
    """Generate `app`'s export of `tasks` tasks, then detect and parse it once: seconds,
    peak memory of the parse, and what came out."""
    from assets.imports.parsers.detect import parse_foreign_export
    from bench.run import PeakMemory

    data = GENERATORS[app](tasks)
    started = time.perf_counter()
    with PeakMemory() as memory:
        parsed = parse_foreign_export(data, file_name="bench", now=START)
    seconds = time.perf_counter() - started
    assert parsed.source_app == app
    return {
        "tasks": tasks,
        "file_bytes": len(data),
        "seconds": round(seconds, 3),
        "goals": parsed.tables["Goal"].num_rows,
        "skipped": sum(e.count for e in parsed.report if e.action == "skipped"),
        **memory.as_dict(),
    }
