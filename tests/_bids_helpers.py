"""BIDS file-name checks shared by the preprocessing tests: nilearn's BIDS parser (installed with the project) and a
strict regular expression of the specification's entity order (``preprocessing.outputs.ENTITY_ORDER``)."""

from __future__ import annotations

import re
from pathlib import Path

from preprocessing.outputs import ENTITY_ORDER

_STRICT = re.compile(
    r"^sub-[A-Za-z0-9]+"
    + "".join(rf"(?:_{k}-[A-Za-z0-9]+)?" for k in ENTITY_ORDER[1:])
    + r"_[A-Za-z0-9]+(?:\.[a-z0-9.]+)$"
)


def assert_bids_name(path: str | Path) -> dict:
    """``path``'s name is BIDS: ``sub-<label>``, entities in order, the suffix last; returns nilearn's parse."""
    from nilearn.interfaces.bids import parse_bids_filename

    name = Path(path).name
    assert _STRICT.match(name), f"{name}: entities out of BIDS order or no suffix last"
    parsed = parse_bids_filename(str(path))
    stem = name.split(".", 1)[0]
    suffix = stem.rsplit("_", 1)[1]
    assert parsed["suffix"] == suffix and "-" not in parsed["suffix"], (name, parsed)
    assert all(v is not None for v in parsed["entities"].values()), (name, parsed)  # no bare word among entities
    keys = list(parsed["entities"])
    assert keys == sorted(keys, key=ENTITY_ORDER.index), (name, keys)
    return parsed
