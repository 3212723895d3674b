"""Choosing the team's classes: an explicit list, a course class table, or the seed rule.

Pure functions over the source's class names; `pipeline.data` does the I/O around them.

The rule used without a table (documented in README.md): the team's classes are
`sorted(numpy.random.default_rng(team_seed).choice(num_available, num_classes, replace=False))`,
ids into the source's sorted class list (CIFAR-100 fine label ids 0..99, or the index of an image
folder's class among its sorted folder names).
"""
import difflib
import io
import re
from typing import List, Sequence, Tuple

import numpy as np

from base.errors import UserError

_MAX_ID_DIGITS = 9  # no class table or source has a billion classes


def classes_by_rule(team_seed: int, num_classes: int, num_available: int) -> Tuple[int, ...]:
  """The documented seed rule: `num_classes` distinct ids out of `num_available`, sorted."""
  if not 1 <= num_classes <= num_available:
    raise UserError(f'--num-classes {num_classes}: the source has {num_available} classes')
  if team_seed < 0:
    raise UserError(f'--team-seed {team_seed}: must be 0 or more')
  rng = np.random.default_rng(team_seed)
  return tuple(sorted(int(i) for i in rng.choice(num_available, num_classes, replace=False)))


def parse_class_table(text: str, source: str = 'class table') -> List[List[int]]:
  """Rows of fine-label ids from CSV-like text (commas, semicolons, tabs or spaces).

  A first line without numbers is a header and is skipped; a row may start with its own team
  number (0-based, equal to its position), which is dropped.
  """
  rows = []
  lines = [line for line in io.StringIO(text).read().splitlines() if line.strip()]
  for n, line in enumerate(lines):
    cells = [c.strip('"\' ') for c in re.split(r'[,;\t ]+', line.strip()) if c.strip('"\' ')]
    if not all(re.fullmatch(r'-?\d+', c) for c in cells):
      if n == 0:
        continue  # header
      raise UserError(f'{source}: line {n + 1} is not a list of class ids: {line.strip()[:60]!r}')
    rows.append([_class_id(c, f'{source}: line {n + 1}') for c in cells])
  if not rows:
    raise UserError(f'{source}: no rows of class ids')
  widths = {len(r) for r in rows}
  if len(widths) == 2 and max(widths) - min(widths) == 1:
    pass  # some rows carry their team number; handled in row_from_table
  elif len(widths) > 1:
    raise UserError(f'{source}: rows have different lengths {sorted(widths)}')
  return rows


def row_from_table(rows: Sequence[Sequence[int]], team_seed: int, num_classes: int,
                   num_available: int, source: str = 'class table') -> Tuple[int, ...]:
  """Row `team_seed` of a parsed class table, checked against `num_classes`."""
  if not 0 <= team_seed < len(rows):
    raise UserError(f'--team-seed {team_seed} is outside the {source} '
                    f'(rows 0..{len(rows) - 1})')
  row = list(rows[team_seed])
  if len(row) == num_classes + 1 and row[0] == team_seed:
    row = row[1:]
  if len(row) != num_classes:
    raise UserError(f'the {source} has no row for --num-classes {num_classes} '
                    f'(its rows hold {len(row)} class ids)')
  return checked_ids(row, num_available, source)


def _class_id(digits: str, where: str) -> int:
  """int(digits), refusing numbers no class id can be (int() itself refuses over 4,300 digits)."""
  if len(digits.lstrip('-')) > _MAX_ID_DIGITS:
    raise UserError(f'{where}: {digits[:12]}... is not a class id')
  return int(digits)


def checked_ids(ids: Sequence[int], num_available: int, source: str) -> Tuple[int, ...]:
  bad = [i for i in ids if not 0 <= i < num_available]
  if bad:
    raise UserError(f'{source}: class ids {bad} are outside 0..{num_available - 1}')
  dupes = sorted({i for i in ids if list(ids).count(i) > 1})
  if dupes:
    raise UserError(f'{source}: duplicate classes {dupes}')
  return tuple(sorted(ids))


def classes_from_list(tokens: Sequence[str], names: Sequence[str]) -> Tuple[int, ...]:
  """Ids of an explicit class list of names and/or ids (e.g. `apple,17,maple_tree`)."""
  ids = []
  for token in tokens:
    token = token.strip()
    if re.fullmatch(r'\d+', token):
      ids.append(_class_id(token, '--classes'))
    elif token in names:
      ids.append(list(names).index(token))
    else:
      near = difflib.get_close_matches(token, names, n=3)
      hint = f'; did you mean {", ".join(near)}?' if near else ''
      raise UserError(f'--classes: unknown class {token!r}{hint}')
  if len(ids) < 2:
    raise UserError('--classes: name at least two classes')
  return checked_ids(ids, len(names), '--classes')
