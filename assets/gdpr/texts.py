"""The Art. 15 GDPR texts a bundle's README.html gives: who the controller is, the purposes
and legal bases, recipients, retention, rights, where to complain.

The operator words them for their installation in a JSON file (named by the setting
GOALPORT_GDPR_TEXTS, read by `resources.settings`); every key is optional and falls back to
the defaults here. The file is checked before any bundle is made, and an unusable one is
refused with the file and key named, so that a typo never ships a bundle that quietly
lacks the operator's wording.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from resources import settings

DEFAULT_GDPR_TEXTS: dict = {
    "controller": "The operator of this Goal Assistant installation.",
    "contact": (
        "Write to the operator of this Goal Assistant installation; their privacy contact "
        "(and data protection officer, if they have one) is named in the app's privacy notice."
    ),
    "purposes": [
        "Providing the Goal Assistant app: keeping your goals, progress, achievements, "
        "Bible study and work projects so that you can track them (contract, Art. 6(1)(b)).",
        "Exports, backups and imports that you ask for (Art. 20 data portability).",
        "Keeping a record of what was done with your data: exports, imports, backups, "
        "deletions (accountability, Art. 5(2); legal obligation, Art. 6(1)(c)).",
        "Keeping the service secure and available (legitimate interest, Art. 6(1)(f)).",
    ],
    "categories": [
        "Account data: e-mail address, first and last name, time zone.",
        "Content you created: goals, progress entries and notes, achievements, settings, "
        "Bible reading plans, readings and study notes, work projects and tasks.",
        "Records of processing: when your data was exported, imported, backed up or deleted.",
    ],
    "recipients": [
        "The operator's hosting and storage providers, as processors under Art. 28.",
        "Nobody else: your data is not sold or shared with third parties for their own use.",
    ],
    "retention": (
        "Your data is kept while your account exists. When you ask for erasure it is deleted "
        "from the database and storage (after a grace period in which you can cancel), your "
        "encryption key is destroyed, and only a pseudonymous record that the erasure took "
        "place is kept. Export files expire after 7 days; backups follow the retention you set."
    ),
    "source": "You: everything in this bundle was entered by you in the app or imported by you.",
    "automatedDecisions": "No decisions with legal or similarly significant effects are automated.",
    "transfers": "None outside the EU/EEA unless the privacy notice says otherwise.",
    "rights": [
        "Access (Art. 15): this bundle.",
        "Rectification (Art. 16): correct your data in the app.",
        "Erasure (Art. 17): ask for your account and data to be deleted.",
        "Restriction (Art. 18) and objection (Art. 21): write to the contact above.",
        "Portability (Art. 20): the data/ folder, in JSON and CSV, can be imported elsewhere.",
        "Withdraw consent at any time, where processing relies on it.",
    ],
    "complaint": (
        "You can complain to a data protection supervisory authority, in particular in the EU "
        "member state where you live or work, or where you think the law was broken."
    ),
    "notIncluded": [],
}
_TEXT_KEYS = (
    "controller",
    "contact",
    "retention",
    "source",
    "automatedDecisions",
    "transfers",
    "complaint",
)
_LIST_KEYS = ("purposes", "categories", "recipients", "rights")


class GdprTextsError(ValueError):
    """The Art. 15 texts file is unusable; the message names the file and the key."""


def check_gdpr_texts(texts: Mapping, where: str = "GDPR texts") -> dict:
    """The defaults overlaid with `texts`, every value checked."""
    merged = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_GDPR_TEXTS.items()}
    for key, value in texts.items():
        if key in _TEXT_KEYS:
            if not isinstance(value, str) or not value.strip():
                raise GdprTextsError(f"{where}: {key!r} must be a non-empty string")
        elif key in _LIST_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise GdprTextsError(f"{where}: {key!r} must be a list of strings")
        elif key == "notIncluded":
            ok = isinstance(value, list) and all(
                isinstance(v, dict) and set(v) == {"what", "why"} for v in value
            )
            if not ok:
                raise GdprTextsError(
                    f'{where}: \'notIncluded\' must be a list of {{"what": ..., "why": ...}}'
                )
        else:
            known = ", ".join(DEFAULT_GDPR_TEXTS)
            raise GdprTextsError(f"{where}: unknown key {key!r}; the keys are {known}")
        merged[key] = value
    return merged


def load_gdpr_texts(path: str | os.PathLike | None = None) -> dict:
    """The Art. 15 texts: the JSON object in `path` (default: the file GOALPORT_GDPR_TEXTS
    names) over the defaults; the defaults alone when no file is configured."""
    path = path or settings.gdpr_texts_path()
    if path is None:
        return check_gdpr_texts({})
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GdprTextsError(
            f"{settings.GDPR_TEXTS_ENV}: cannot read {path}: {exc.strerror}"
        ) from exc
    except json.JSONDecodeError as exc:
        raise GdprTextsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise GdprTextsError(f"{path}: expected a JSON object of texts")
    return check_gdpr_texts(loaded, str(path))
