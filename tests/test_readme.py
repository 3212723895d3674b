"""README.md's "Options and defaults" table and the flags of local_runner.py agree: every flag has
a row with its real default, and every row is a flag."""
import argparse
import os
import re
from typing import Dict

import pytest

import local_runner

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')

# Defaults that the code resolves later (parser default None): the README says who decides.
RESOLVED_LATER = {
    '--data': "Keras' cache",
    '--num-classes': '20 (CIFAR-100), all (folder)',
    '--image-size': "the model's",
    '--dropout': "the model's",
    '--width': "the builder's: 32 for resnet, 48 for airbench",
    '--fine-tune-layers': "the model's: all for mobilenet, 0 for the other backbones",
    '--optimizer': "the model's: muon for resnet and airbench, adam for the others",
    '--learning-rate': "the model's: 0.1 for resnet and airbench, 0.001 for the others",
    '--steps-per-epoch': 'one pass',
}


def readme_options() -> Dict[str, str]:
  """{flag: default cell, backticks removed} of the table under '## Options and defaults'."""
  with open(README) as f:
    text = f.read()
  section = text.split('## Options and defaults', 1)[1].split('\n## ', 1)[0]
  rows = {}
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) >= 2 and cells[0].startswith('`--'):
      flag = cells[0].strip('`').split()[0]
      assert flag not in rows, f'two rows for {flag}'
      rows[flag] = cells[1].replace('`', '')
  return rows


def parser_flags() -> Dict[str, argparse.Action]:
  parser = local_runner.build_parser()
  return {option: action for action in parser._actions  # pylint: disable=protected-access
          for option in action.option_strings
          if option.startswith('--') and not isinstance(action, argparse._HelpAction)}  # pylint: disable=protected-access


def documented_default_matches(action: argparse.Action, cell: str) -> bool:
  """Whether the README's default cell states the parser's default for this flag."""
  flag, default = action.option_strings[-1], action.default
  if flag in RESOLVED_LATER:
    return default is None and cell == RESOLVED_LATER[flag]
  word = cell.split(' (')[0]
  if word == 'off':
    if isinstance(action, argparse._StoreTrueAction):  # pylint: disable=protected-access
      return default is False
    if isinstance(action, argparse._StoreFalseAction):  # pylint: disable=protected-access
      return default is True
    # An optional value (--tune): off by default; the cell names the value of the bare flag.
    return default is None and (action.const is None or f'{action.const} when bare' in cell)
  if word == 'none':
    return default in (None, '', ())
  try:
    return default is not None and float(word) == float(default)
  except ValueError:
    return word == str(default)


def test_every_flag_has_a_row_and_every_row_a_flag():
  rows, flags = readme_options(), parser_flags()
  assert len(rows) > 40  # the table was found and read
  assert sorted(set(flags) - set(rows)) == [], 'flags without a README row'
  assert sorted(set(rows) - set(flags)) == [], 'README rows without a flag'


@pytest.mark.parametrize('flag', sorted(parser_flags()))
def test_readme_default_is_the_parsers(flag):
  rows = readme_options()
  if flag not in rows:
    pytest.fail(f'{flag} has no row in README.md "Options and defaults"')
  action = parser_flags()[flag]
  assert documented_default_matches(action, rows[flag]), (
      f'{flag}: README says {rows[flag]!r}, the parser {action.default!r}')


@pytest.mark.parametrize('action,cell,matches', [
    (argparse.Action(['--epochs'], 'epochs', default=45), '45', True),
    (argparse.Action(['--epochs'], 'epochs', default=45), '40', False),
    (argparse.Action(['--model'], 'model', default='resnet'), 'resnet', True),
    (argparse.Action(['--model'], 'model', default='resnet'), 'simple_cnn', False),
    (argparse.Action(['--study'], 'study', default=''), 'none', True),
    (argparse.Action(['--study'], 'study', default='x'), 'none', False),
    (argparse.Action(['--patience'], 'patience', default=0), '0 (off)', True),
    (argparse.Action(['--tune'], 'tuner', nargs='?', const='random', default=None),
     'off (random when bare)', True),
    (argparse.Action(['--tune'], 'tuner', nargs='?', const='random', default=None),
     'off (hyperband when bare)', False),
    (argparse.Action(['--dropout'], 'dropout', default=0.5), "the model's", False),
])
def test_the_comparison_itself(action, cell, matches):
  """The matcher above tells a right default from a wrong one (it could otherwise pass
  everything)."""
  assert documented_default_matches(action, cell) == matches
