"""Property-based tests (hypothesis) of the parsers that read user input (issue 12).

Every input ends in a valid result or one clear error (a one-line UserError, or argparse's usage
error and exit 2), never a traceback. Bounded: a fixed number of examples per property, each
under a deadline, so the file runs in seconds.
"""
import io
import os
import string
import tempfile
from contextlib import redirect_stderr

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from PIL import Image

from base.errors import UserError
from datasources import classes, sources
from pipeline import cli, data
from tests import fixtures
from tests.test_sources import png_bytes

FUZZ = settings(max_examples=60, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def assert_one_line(error: Exception) -> None:
  message = str(error)
  assert message and '\n' not in message and 'Traceback' not in message, message


# --- the class-table parser ---

_cell = st.one_of(st.integers(-5, 120).map(str), st.sampled_from(['', '"7"', "'3'", 'x', '1.5',
                                                                  '9' * 30, 'team', '-']))
_separator = st.sampled_from([',', ';', '\t', ' ', ', ', ',,'])
_line = st.builds(lambda cells, sep: sep.join(cells), st.lists(_cell, max_size=8), _separator)
_table_rows = st.builds(lambda rows: '\n'.join(','.join(map(str, r)) for r in rows),
                       st.lists(st.lists(st.integers(0, 99), min_size=3, max_size=3),
                                min_size=1, max_size=5))
_table_text = st.one_of(st.text(max_size=200), st.lists(_line, max_size=8).map('\n'.join),
                        _table_rows, _table_rows, _table_rows)  # weighted towards real tables


@FUZZ
@given(text=_table_text, team_seed=st.sampled_from([0, 0, 1, 2, 4, -1, 7]),
       num_classes=st.sampled_from([3, 3, 3, 0, 2, 4]),
       num_available=st.sampled_from([100, 100, 50, 1]))
def test_class_table_parser(text, team_seed, num_classes, num_available):
  try:
    rows = classes.parse_class_table(text, 'table.csv')
    ids = classes.row_from_table(rows, team_seed, num_classes, num_available, 'table.csv')
  except UserError as e:
    assert_one_line(e)
    event('refused')
    return
  event('accepted')
  assert len(ids) == num_classes and list(ids) == sorted(set(ids))
  assert all(0 <= i < num_available for i in ids)


@FUZZ
@given(tokens=st.lists(st.one_of(st.sampled_from(fixtures.FINE_NAMES), st.text(max_size=12),
                                 st.integers(0, 150).map(str), st.just('9' * 5000)),
                       max_size=6))
def test_explicit_class_list(tokens):
  try:
    ids = classes.classes_from_list(tokens, fixtures.FINE_NAMES)
  except UserError as e:
    assert_one_line(e)
    return
  assert len(ids) == len(tokens) >= 2 and list(ids) == sorted(set(ids))


# --- the flag parser, through the preflight ---


@pytest.fixture(scope='module')
def small_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp('fuzz_folder')
  fixtures.write_image_folder(str(root), ['cat', 'dog', 'emu'], 5)
  table = root.parent / 'table.csv'
  table.write_text('0,1\n1,2\n0,2\n')
  return str(root), str(table)


_flag_values = {
    '--team-seed': st.one_of(st.integers(-3, 5).map(str), st.text(max_size=4)),
    '--num-classes': st.one_of(st.integers(-1, 5).map(str), st.sampled_from(['x', '1e3', ''])),
    '--classes': st.one_of(st.sampled_from(['cat,dog', 'cat', 'emu,0', 'cat,cat', 'yak,cat',
                                            ',,', '2,1,0', '3,0']), st.text(max_size=10)),
    '--eval-fraction': st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str),
                                 st.sampled_from(['0.5', 'x', '1e-9', '-0'])),
    '--test-fraction': st.one_of(st.floats(-1, 2).map(str), st.just('nan')),
    '--beam-workers': st.integers(-2, 3).map(str),
    '--model': st.text(max_size=8),
    '--batch-size': st.integers(-5, 500).map(str),
    '--fine-tune-layers': st.sampled_from(['0', 'all', '-1', '2', 'some']),
    '--tune': st.sampled_from(['random', 'hyperband', 'grid']),
    '--variant': st.text(max_size=5),
}


@st.composite
def _argv(draw):
  argv = []
  for flag in draw(st.lists(st.sampled_from(sorted(_flag_values) + ['--trust-data', '--bogus',
                                                                      '--class-table']),
                            max_size=5)):
    argv.append(flag)
    if flag == '--class-table':
      argv.append(draw(st.sampled_from(['TABLE', '/nonexistent/table.csv'])))
    elif flag in _flag_values:
      argv.append(draw(_flag_values[flag]))
  return argv


@FUZZ
@given(argv=_argv())
def test_flags_end_in_a_config_or_one_error(small_folder, argv):
  folder, table = small_folder
  argv = ['--data', folder] + [table if a == 'TABLE' else a for a in argv]
  stderr = io.StringIO()
  try:
    with redirect_stderr(stderr):
      config = cli.config_from_args(cli.build_parser('fuzz').parse_args(argv))
      resolved, sizes = data.resolve_data(config.data)
  except SystemExit as e:  # argparse: usage, then one 'error:' line
    assert e.code == 2 and ': error: ' in stderr.getvalue().strip().splitlines()[-1]
    return
  except UserError as e:
    assert_one_line(e)
    event('refused')
    return
  event('accepted')
  assert set(resolved.class_names) <= {'cat', 'dog', 'emu'} and len(resolved.class_names) >= 1
  assert sum(sizes.values()) == 5 * len(resolved.class_names)


# --- the image-folder scanner ---


def _image_bytes(kind: str, size: int) -> bytes:
  """One file's bytes: a valid image of `kind`, or broken ones."""
  rng = np.random.default_rng(size)
  pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
  out = io.BytesIO()
  if kind in ('RGB', 'L', 'RGBA', 'P', 'LA', '1'):
    Image.fromarray(pixels).convert(kind).save(out, format='PNG')
  elif kind == 'jpeg':
    Image.fromarray(pixels).save(out, format='JPEG')
  elif kind == 'gif':
    Image.fromarray(pixels).save(out, format='GIF')
  elif kind == 'truncated':
    Image.fromarray(pixels).save(out, format='PNG')
    return out.getvalue()[:len(out.getvalue()) // 2]
  elif kind == 'bomb_header':
    return png_bytes(20000, 20000, 1, 0)
  elif kind == 'random':
    return rng.bytes(64)
  return out.getvalue()


_name = st.text(alphabet=string.ascii_letters + string.digits + '_-. ', min_size=1,
                max_size=8).filter(lambda n: n not in ('.', '..'))
_good_file = st.tuples(_name, st.sampled_from(['.png', '.PNG', '.jpg', '.Jpeg']),
                       st.sampled_from(['RGB', 'L', 'RGBA', 'P', 'LA', '1', 'jpeg']),
                       st.just(8))
_any_file = st.tuples(_name, st.sampled_from(['.png', '.PNG', '.jpg', '.Jpeg', '.txt', '']),
                      st.sampled_from(['RGB', 'L', 'RGBA', 'P', 'LA', '1', 'jpeg', 'gif',
                                       'truncated', 'bomb_header', 'random', 'empty']),
                      st.sampled_from([8, 8, 8, 6]))
# Half the folders hold only good images (most are accepted), half anything (most are refused).
_split = st.one_of(st.dictionaries(_name, st.lists(_good_file, min_size=1, max_size=3),
                                   min_size=1, max_size=3),
                   st.dictionaries(_name, st.lists(_any_file, max_size=3), max_size=3))


@FUZZ
@given(train=_split, test=st.one_of(st.none(), _split))
def test_image_folder_scanner(train, test):
  with tempfile.TemporaryDirectory() as root:
    for split, tree in (('train', train), ('test', test)):
      if tree is None:
        continue
      for class_name, files in tree.items():
        folder = os.path.join(root, split, class_name)
        os.makedirs(folder, exist_ok=True)
        for stem, ext, kind, size in files:
          with open(os.path.join(folder, stem + ext), 'wb') as f:
            f.write(b'' if kind == 'empty' else _image_bytes(kind, size))
    try:
      scan = sources.scan_image_folder(root)
    except UserError as e:
      assert_one_line(e)
      event('refused')
      return
    event('accepted')
    # Whatever the scan accepts, ExampleGen's reader reads, at the one size the scan found.
    assert list(scan.class_names) == sorted(scan.class_names)
    for files in (scan.train_files, scan.test_files or {}):
      for paths in files.values():
        assert paths
        for path in paths:
          pixels = sources.load_image(path, scan.image_size)
          assert pixels.dtype == np.uint8 and pixels.shape == scan.image_size + (3,)
