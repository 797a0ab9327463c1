"""A run's data, checked: the same files (by checksum) as the run was made on, or a clear refusal.

The task loaders themselves are task plugins (``zoo.plugins.tasks``: ``chebi20``, ``pairs``); their data
types are in :mod:`zoo.taskdata`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.cache import data_fingerprint
from zoo.errors import DataError, DataWarning

__all__ = ["check_same_data", "data_fingerprint"]


def check_same_data(recorded: dict[str, str] | None, recorded_dir: str | None, data: Any,
                    subject: str, fix: str, data_dir: str | Path | None = None) -> bool:
    """Refuse (:class:`DataError`) data whose checksums differ from the ``recorded`` ones, naming both
    data fingerprints, the files that differ and ``fix``. ``data`` is the loaded data (any task's), or the
    checksums of ``data_dir`` (a mapping). Returns False, with a warning, where nothing was recorded."""
    checksums = dict(data) if isinstance(data, Mapping) else dict(data.checksums)
    where = data_dir if isinstance(data, Mapping) else data.data_dir
    if not isinstance(recorded, dict) or not recorded:
        warnings.warn(f"{subject} records no data checksums: cannot check that {where} is the data it was trained on",
                      DataWarning, stacklevel=2)
        return False
    differ = sorted(n for n in {*recorded, *checksums} if recorded.get(n) != checksums.get(n))
    if differ:
        raise DataError(f"{subject} was made on other data: its {', '.join(differ)} checksum{'s' if len(differ) > 1 else ''} "
                        f"differ{'' if len(differ) > 1 else 's'} from {where} (trained on data {data_fingerprint(recorded)} "
                        f"in {recorded_dir or 'an unrecorded folder'}; {where} is data {data_fingerprint(checksums)}); {fix}")
    return True
