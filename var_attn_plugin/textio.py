"""Plain-text input shared by the data preparers and the alignment tools (no torch, no fairseq).

- ``Link``: one alignment link, ``(source position, target position)``, 0-based;
- :func:`read_lines`: the lines of a UTF-8 text file, or an error of the caller's own type
  that names the flag (or the role) the path came from.
"""

from pathlib import Path
from typing import List, Tuple, Type, Union

Link = Tuple[int, int]  # (source position, target position)


def read_lines(path: Union[str, Path], flag_or_role: str, error: Type[Exception] = ValueError,
               hint: str = "") -> List[str]:
    """The lines of the UTF-8 text file ``path`` (without their line ends).

    A missing file (or a directory) raises ``error(f"{flag_or_role} {path}: no such file{hint}")``,
    text that is not UTF-8 ``error(f"{flag_or_role} {path} is not UTF-8 text (...){hint}")``:
    ``flag_or_role`` is the flag the path was given with (``--source-file``) or its role
    (``gold file``), ``error`` the caller's user-error class, ``hint`` the fix (``"; ..."``).
    """
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, IsADirectoryError):
        raise error(f"{flag_or_role} {path}: no such file{hint}") from None
    except UnicodeDecodeError as e:
        raise error(f"{flag_or_role} {path} is not UTF-8 text ({e}){hint}") from None
