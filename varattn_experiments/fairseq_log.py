"""fairseq's ``--log-format json`` lines as records.

A line looks like ``2026-12-05 07:00:00 | INFO | train_inner | {"epoch": 1, "update": 0.3, ...}``;
values are strings. :func:`read_records` returns the records of one category (``train_inner``,
``train``, ``valid``) with their values as floats where they are numbers.
"""

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| \w+ \| ([\w.]+) \| (\{.*\})\s*$")

Record = Dict[str, Union[float, str]]


def _value(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def parse_line(line: str) -> Optional[Tuple[datetime, str, Record]]:
    """``(time, category, record)`` of one JSON log line, or None for any other line."""
    match = _LINE.match(line)
    if match is None:
        return None
    try:
        raw = json.loads(match.group(3))
    except ValueError:
        return None
    when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    return when, match.group(2), {key: _value(value) for key, value in raw.items()}


def iter_records(path: Path) -> Iterator[Tuple[datetime, str, Record]]:
    if not Path(path).is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parsed = parse_line(line)
            if parsed is not None:
                yield parsed


def read_records(path: Path, category: str, subset: Optional[str] = None) -> List[Record]:
    """The records of ``category`` (``train_inner``, ``train`` or ``valid``); a resumed run may
    log an update twice: the last one wins. Validation on another subset (``--valid-subset
    valid1``) logs under its name with its prefix (``valid1_ppl``): ``subset`` names it, and its
    keys come back as ``valid_*``."""
    return select_records(iter_records(path), category, subset)


def select_records(parsed: Iterable[Tuple[datetime, str, Record]], category: str,
                   subset: Optional[str] = None) -> List[Record]:
    """:func:`read_records` of lines already parsed by :func:`iter_records`."""
    by_update: Dict[float, Record] = {}
    key = {"train_inner": "num_updates", "train": "train_num_updates", "valid": "valid_num_updates"}[category]
    wanted = subset or category
    for _, cat, record in parsed:
        if cat != wanted:
            continue
        if category == "valid" and wanted != "valid":
            record = {("valid_" + k[len(wanted) + 1:] if k.startswith(wanted + "_") else k): v
                      for k, v in record.items()}
        if key in record:
            by_update[float(record[key])] = record
    return [by_update[u] for u in sorted(by_update)]
