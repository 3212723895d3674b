"""Bad input through the real command line: one line naming the problem, exit 2, no artifact."""
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, env=None):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'local_runner.py'), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=120,
                        env={**os.environ, **(env or {})})


def assert_one_line_error(result, message, output_dir=None):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert message in lines[0]
  if output_dir:
    assert not os.path.exists(os.path.join(output_dir, 'pipeline_root'))


def test_help_lists_every_flag():
  """local_runner.py --help shows every flag of `cli.build_parser` (whose defaults
  tests/test_readme.py checks against README.md)."""
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  result = run_cli('--help')
  assert result.returncode == 0, result.stderr
  flags = {o for a in cli.build_parser('')._actions for o in a.option_strings}  # pylint: disable=protected-access
  assert len(flags) > 40
  shown = set(re.findall(r'(?<![\w-])(--[a-z][a-z-]*)', result.stdout))
  assert sorted(flags - shown - {'-h'}) == []


def test_invalid_flag():
  result = run_cli('--num-classes', 'many')
  assert result.returncode == 2 and "invalid int value: 'many'" in result.stderr


@pytest.fixture
def bad_inputs(cifar_archive, tmp_path):
  archive = cifar_archive[0]
  truncated = str(tmp_path / 'truncated.tar.gz')
  fixtures.write_cifar100_archive(truncated, 2, 1, corrupt='truncate')
  table = tmp_path / 'table.csv'
  table.write_text('1,2,3,4\n5,6,7,8\n')
  empty_class = tmp_path / 'folder_empty'
  fixtures.write_image_folder(str(empty_class), ['cat', 'dog'], 3)
  os.makedirs(empty_class / 'train' / 'emu')
  mixed = tmp_path / 'folder_mixed'
  fixtures.write_image_folder(str(mixed), ['cat', 'dog'], 3)
  Image.new('RGB', (64, 48)).save(mixed / 'train' / 'cat' / 'z.png')
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  return dict(archive=archive, truncated=truncated, table=str(table), empty=str(empty_class),
              mixed=str(mixed), blocker=str(blocker))


@pytest.mark.parametrize('args,message', [
    (['--data', '{tmp}/missing.tar.gz'], 'missing.tar.gz: no such file or folder'),
    (['--data', '{truncated}', '--trust-data'], 'truncated or corrupt archive'),
    (['--data', '{truncated}'], 'is not the official CIFAR-100 archive'),
    (['--data', '{archive}'], 'pass --trust-data if you made it'),
    (['--data', '{archive}', '--trust-data', '--classes', 'apple,unicorn'],
     "unknown class 'unicorn'"),
    (['--data', '{archive}', '--trust-data', '--classes', 'apple,3,apple'],
     'duplicate classes [0]'),
    (['--data', '{archive}', '--trust-data', '--classes', 'apple,250'], 'outside 0..99'),
    (['--data', '{archive}', '--trust-data', '--class-table', '{table}', '--num-classes', '20'],
     'has no row for --num-classes 20'),
    (['--data', '{archive}', '--trust-data', '--class-table', '{table}', '--num-classes', '4',
      '--team-seed', '5'], '--team-seed 5 is outside the class table'),
    (['--data', '{empty}'], "class 'emu' has no images"),
    (['--data', '{mixed}'], 'images of mixed sizes'),
    (['--data', '{archive}', '--trust-data', '--output-dir', '{blocker}/out'], 'not writable'),
])
def test_bad_input(bad_inputs, tmp_path, args, message):
  args = [a.format(tmp=tmp_path, **bad_inputs) for a in args]
  output_dir = str(tmp_path / 'out')
  if '--output-dir' not in args:
    args += ['--output-dir', output_dir]
  assert_one_line_error(run_cli(*args), message, output_dir)


def test_missing_keras_cache_and_no_network(tmp_path):
  result = run_cli('--output-dir', str(tmp_path / 'out'),
                   env={'KERAS_HOME': str(tmp_path / 'keras'),
                        'CIFAR100_URL': 'http://127.0.0.1:9/cifar-100-python.tar.gz'})
  assert_one_line_error(result, 'put cifar-100-python.tar.gz at ' + str(
      tmp_path / 'keras' / 'datasets' / 'cifar-100-python.tar.gz'))


@pytest.mark.parametrize('argv,expected', [
    (['--model', 'mobilenet'], 'all'),  # the model's own: modules/models.py, docs/results.md
    (['--model', 'vgg16'], '0'),
    (['--model', 'resnet'], 'all'),  # from scratch: every layer
    (['--model', 'mobilenet', '--fine-tune-layers', '0'], '0'),
    (['--model', 'vgg16', '--fine-tune-layers', '5'], '5'),
])
def test_fine_tune_layers_default_to_the_models(argv, expected):
  """Like --optimizer and --learning-rate: None in the config, the model's own once resolved."""
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  from modules import trainer  # pylint: disable=g-import-not-at-top
  config = cli.config_from_args(cli.build_parser('').parse_args(argv)).training
  given = '--fine-tune-layers' in argv
  assert config.fine_tune_layers == (expected if given else None)
  assert trainer.with_model_defaults(config).fine_tune_layers == expected
  assert str(trainer.fine_tune_layers_of(config)) == expected


def test_width_and_cutout_reach_the_training_config():
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  parse = lambda *argv: cli.config_from_args(cli.build_parser('').parse_args(list(argv))).training
  assert (parse().width, parse().cutout) == (None, 0)  # the builder's width, no cutout
  given = parse('--width', '48', '--cutout', '8')
  assert (given.width, given.cutout) == (48, 8)


def test_a_cutout_larger_than_the_images_is_a_one_line_error(bad_inputs, tmp_path):
  output_dir = str(tmp_path / 'out')
  result = run_cli('--data', bad_inputs['archive'], '--trust-data', '--cutout', '40',
                   '--output-dir', output_dir)
  assert_one_line_error(result, '--cutout 40: must be 0 (off) or a whole number of pixels up to '
                        'the stored image side, 32', output_dir)
