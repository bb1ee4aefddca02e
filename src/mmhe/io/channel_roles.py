"""Channel roles from real device labels: a replaceable table, not exact names.

BIOPAC labels differ by amplifier and AcqKnowledge version ("EKG - ERS100C",
"ECG, X, RSPEC-R", "EDA - GSR100C", "EDA filtered, differentiated", "RESP - RSP100C",
"CH4 Input"); EEG amplifiers add auxiliary channels (EKG, EMG, HEO, VEO, Trigger). The
table `mmhe/data/channel_roles.csv` maps them to roles, one row per rule, first match wins:

``pattern``  case-insensitive regular expression searched in the label (first in the
             label's first comma-separated field, the user's own name, then in the
             whole label, where module names such as GSR100C stand)
``role``     ECG, PPG, RSP, EDA, SKT, EMG, EOG or TRIGGER
``name``     the column name a channel matching the rule gets (``EDA``, ``EDA_DIFF``,
             ``ECG_RATE``)
``raw``      1 for the recorded signal, 0 for a channel AcqKnowledge computed from it
             (filtered, differentiated, a rate); the raw signal wins its role
``devices``, ``note``  documentation only

Give your own table as a CSV with the same columns (``read_biopac(..., roles=path)``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

from mmhe.errors import InputFileError

ROLES: tuple[str, ...] = ("ECG", "PPG", "RSP", "EDA", "SKT", "EMG", "EOG", "TRIGGER")
PAIRED_ROLES = frozenset({"EMG", "SKT"})
"""Recorded twice in MMHE (EMG A/B, SKT A/B): their columns are always lettered."""
_REQUIRED = {"pattern", "role", "name", "raw"}


@dataclass(frozen=True)
class RoleRule:
    """One row of the role table (see the module docstring)."""

    pattern: re.Pattern[str]
    role: str
    name: str
    raw: bool


@dataclass
class ChannelAssignment:
    """Column names and roles for a file's channel labels.

    names : one unique column name per label, in file order.
    roles : {column: role} for recognised channels (unknown channels are absent).
    raw : {column: True for a recorded signal, False for a derived one} (recognised only).
    chosen : {role: column} the channel each role uses (a raw one when there is one).
    unknown : labels no rule recognised, kept under their own names.
    notes : one sentence per choice made (two candidates for one role, derived only).
    """

    names: list[str]
    roles: dict[str, str] = field(default_factory=dict)
    raw: dict[str, bool] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_roles_path() -> Path:
    """The packaged table ``mmhe/data/channel_roles.csv``."""
    return Path(str(resources.files("mmhe") / "data" / "channel_roles.csv"))


@cache
def _load_cached(path: str) -> tuple[RoleRule, ...]:
    file = Path(path)
    if not file.is_file():
        raise InputFileError(file, "channel-role table not found", "give an existing CSV file")
    try:
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputFileError(file, f"cannot be parsed as CSV: {exc}") from exc
    missing = _REQUIRED - set(table.columns)
    if missing:
        raise InputFileError(
            file,
            f"channel-role table lacks column(s) {sorted(missing)}",
            "columns: pattern, role, name, raw (devices and note optional)",
        )
    rules = []
    for row_number, row in enumerate(table.itertuples(index=False), start=2):
        try:
            pattern = re.compile(row.pattern, re.IGNORECASE)
        except re.error as exc:
            raise InputFileError(
                file, f"row {row_number}: bad pattern {row.pattern!r}: {exc}"
            ) from None
        role = row.role.strip().upper()
        if role not in ROLES:
            raise InputFileError(
                file, f"row {row_number}: role {row.role!r} is not one of {', '.join(ROLES)}"
            )
        if row.raw.strip() not in ("0", "1"):
            raise InputFileError(file, f"row {row_number}: raw must be 0 or 1, got {row.raw!r}")
        rules.append(RoleRule(pattern, role, row.name.strip() or role, row.raw.strip() == "1"))
    return tuple(rules)


def load_role_table(path: str | Path | None = None) -> tuple[RoleRule, ...]:
    """The rules of a role table (default: the packaged one), cached per path."""
    return _load_cached(str(Path(path) if path is not None else default_roles_path()))


def channel_role(label: str, rules: Sequence[RoleRule] | None = None) -> RoleRule | None:
    """The first rule matching a label (its first comma field first), or None.

    >>> channel_role("EDA - GSR100C").name
    'EDA'
    >>> channel_role("EDA filtered, differentiated").name
    'EDA_DIFF'
    """
    rules = load_role_table() if rules is None else rules
    first = label.split(",")[0]
    for text in (first, label):
        for rule in rules:
            if rule.pattern.search(text):
                return rule
    return None


def _letter(label: str) -> str | None:
    """A letter A/B written as a word in the label's first field ("EMG A, X, EMG2-R")."""
    words = re.findall(r"[A-Za-z0-9]+", label.split(",")[0].upper())
    return next((w for w in words if w in ("A", "B")), None)


def assign_channels(
    labels: Sequence[str], rules: Sequence[RoleRule] | None = None
) -> ChannelAssignment:
    """Column names and roles of a file's channels, recognised by label, never by position.

    labels : channel labels as written in the file, in file order.
    Rules: a raw channel of a role is named after the rule (``ECG``, ``EDA``); when a
    role has several raw channels, the first in file order keeps the plain name and the
    others are numbered (``ECG_2``), and the choice is noted. Paired roles (EMG, SKT) are
    always lettered (``EMG_A``, ``EMG_B``: a letter written in the label is kept, others
    take the next free letter). Derived channels take their rule's name (``EDA_DIFF``,
    ``ECG_RATE``) and are never chosen while a raw channel of the role exists. Unknown
    channels keep their label (made unique with " (2)", ...) and are listed.
    """
    rules = load_role_table() if rules is None else rules
    matched = [channel_role(label, rules) for label in labels]
    names: list[str | None] = [None] * len(labels)
    assignment = ChannelAssignment(names=[])

    # paired roles: lettered like the MMHE export (EMG A / EMG B)
    for role in PAIRED_ROLES:
        indices = [i for i, r in enumerate(matched) if r is not None and r.role == role and r.raw]
        taken = {_letter(labels[i]) for i in indices} - {None}
        used: set[str] = set()
        for i in indices:
            letter = _letter(labels[i])
            if letter is None or letter in used:
                letter = next(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in taken | used)
            used.add(letter)
            names[i] = f"{role}_{letter}"

    seen: Counter[str] = Counter()
    for i, (label, rule) in enumerate(zip(labels, matched, strict=True)):
        if rule is None:
            names[i] = label.strip()
            assignment.unknown.append(label)
            continue
        if names[i] is None:
            seen[rule.name] += 1
            names[i] = rule.name if seen[rule.name] == 1 else f"{rule.name}_{seen[rule.name]}"
    final = _unique([n for n in names if n is not None])
    assignment.names = final
    for name, rule in zip(final, matched, strict=True):
        if rule is not None:
            assignment.roles[name] = rule.role
            assignment.raw[name] = rule.raw

    for role in ROLES:
        raw = [
            (name, label)
            for name, label, rule in zip(final, labels, matched, strict=True)
            if rule is not None and rule.role == role and rule.raw
        ]
        derived = [
            (name, label)
            for name, label, rule in zip(final, labels, matched, strict=True)
            if rule is not None and rule.role == role and not rule.raw
        ]
        if role in PAIRED_ROLES or role == "TRIGGER":
            if raw:
                assignment.chosen[role] = raw[0][0]
            continue
        if raw:
            assignment.chosen[role] = raw[0][0]
            others = raw[1:] + [(n, lab) for n, lab in derived if not n.endswith("_RATE")]
            if others:
                assignment.notes.append(
                    f"{role}: {len(raw) + len(derived)} channels fit; using raw {raw[0][1]!r} "
                    f"as {raw[0][0]}, keeping "
                    + ", ".join(f"{label!r} as {name}" for name, label in others)
                )
        elif derived:
            assignment.notes.append(
                f"{role}: only derived channel(s) "
                + ", ".join(f"{label!r} ({name})" for name, label in derived)
                + f"; {role} features need the raw signal"
            )
    return assignment


def _unique(names: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out
