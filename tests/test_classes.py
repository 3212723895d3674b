"""Class selection: the seed rule, course class tables, explicit lists."""
import pytest

from datasources import classes
from base.errors import UserError
from tests.fixtures import FINE_NAMES


def test_rule_is_deterministic_sorted_and_distinct():
  first = classes.classes_by_rule(team_seed=7, num_classes=40, num_available=100)
  assert first == classes.classes_by_rule(7, 40, 100)
  assert list(first) == sorted(set(first)) and len(first) == 40
  assert all(0 <= i < 100 for i in first)
  assert first != classes.classes_by_rule(8, 40, 100)


def test_rule_matches_its_documented_formula():
  import numpy as np
  expected = sorted(int(i) for i in np.random.default_rng(3).choice(100, 20, replace=False))
  assert list(classes.classes_by_rule(3, 20, 100)) == expected


def test_rule_errors():
  with pytest.raises(UserError, match='--num-classes 120'):
    classes.classes_by_rule(0, 120, 100)
  with pytest.raises(UserError, match='--team-seed -1'):
    classes.classes_by_rule(-1, 20, 100)


def test_table_with_header_and_team_column():
  text = 'team,c1,c2,c3\n0,5,3,9\n1,"10",11,12\n'
  rows = classes.parse_class_table(text)
  assert classes.row_from_table(rows, 1, 3, 100) == (10, 11, 12)
  assert classes.row_from_table(rows, 0, 3, 100) == (3, 5, 9)  # sorted


def test_table_plain_rows_any_separator():
  rows = classes.parse_class_table('1 2 3 4\n5;6;7;8\n\n9,10,11,12\n')
  assert classes.row_from_table(rows, 2, 4, 100) == (9, 10, 11, 12)


@pytest.mark.parametrize('text,seed,n,message', [
    ('1,2,3\n4,5,6\n', 2, 3, r'--team-seed 2 is outside the class table \(rows 0..1\)'),
    ('1,2,3\n4,5,6\n', 0, 4, 'has no row for --num-classes 4'),
    ('1,2,3\n4,5,106\n', 1, 3, r'class ids \[106\] are outside 0..99'),
    ('1,2,2\n', 0, 3, r'duplicate classes \[2\]'),
    ('1,2,3\n4,x,6\n', 0, 3, 'line 2 is not a list of class ids'),
])
def test_table_errors(text, seed, n, message):
  with pytest.raises(UserError, match=message):
    classes.row_from_table(classes.parse_class_table(text), seed, n, 100)


def test_explicit_list_by_name_and_id():
  assert classes.classes_from_list(['maple_tree', '0', 'whale'], FINE_NAMES) == (
      0, FINE_NAMES.index('maple_tree'), FINE_NAMES.index('whale'))


def test_explicit_list_errors():
  with pytest.raises(UserError, match="unknown class 'mapel_tree'; did you mean maple_tree"):
    classes.classes_from_list(['apple', 'mapel_tree'], FINE_NAMES)
  with pytest.raises(UserError, match=r'duplicate classes \[0\]'):
    classes.classes_from_list(['apple', '0'], FINE_NAMES)
  with pytest.raises(UserError, match=r'outside 0..99'):
    classes.classes_from_list(['apple', '100'], FINE_NAMES)
