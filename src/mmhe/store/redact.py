"""Replace participant names by pseudonyms in every text that goes into a store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmhe.annotations import CodingFile, PseudonymMap
    from mmhe.store.layout import Discovery


class Redactor:
    """Case-insensitive replacement of every known name (longest first) by its pseudonym.

    Whole words only: a name is replaced where no letter touches it on either side
    (digits, ``_``, ``/`` and punctuation may), so a short name never eats into words.

    >>> Redactor({"liyan": "sub-001"})("/raw/LiYan20230802/EEG failed")
    '/raw/sub-00120230802/EEG failed'
    >>> Redactor({"an": "sub-002"})("cannot read an_1_146_an_20230718.avi")
    'cannot read sub-002_1_146_sub-002_20230718.avi'
    """

    def __init__(self, names_to_ids: Mapping[str, str]) -> None:
        self._ids = {name.casefold(): sid for name, sid in names_to_ids.items() if name.strip()}
        names = sorted(self._ids, key=len, reverse=True)
        self._pattern = (
            re.compile(
                r"(?<![^\W\d_])(?:" + "|".join(re.escape(n) for n in names) + r")(?![^\W\d_])",
                re.IGNORECASE,
            )
            if names
            else None
        )

    def __call__(self, text: object) -> str:
        text = str(text)
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._ids[m.group(0).casefold()], text)


def name_redactor(found: Discovery, names: PseudonymMap, coding: CodingFile | None) -> Redactor:
    """A `Redactor` of every spelling of a raw tree's participants: their keys, folder
    names and the coding file's Subject column, each mapped to its pseudonym."""
    spoken = {}
    for key, files in found.participants.items():
        spoken[key] = spoken[files.folder.name] = names.id_for(key)
    if coding is not None:
        spoken.update({subject: names.id_for(subject) for subject in coding.table["subject"]})
    return Redactor(spoken)
