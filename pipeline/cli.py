"""Command-line flags -> `PipelineConfig`, shared by both runners; and the error-reporting wrapper."""
import argparse
import os
import sys
import tempfile
from typing import Callable, Optional, Sequence

from pipeline.configs import DataConfig, PipelineConfig, RunnerConfig
from pipeline.errors import UserError, user_error_message


def _csv(value: str):
  return tuple(v.strip() for v in value.split(',') if v.strip())


def add_data_flags(parser: argparse.ArgumentParser) -> None:
  d = DataConfig()
  g = parser.add_argument_group('data and classes')
  g.add_argument('--data', default=d.data, metavar='PATH',
                 help='cifar-100-python.tar.gz, its extracted cifar-100-python/ folder, or an image '
                 'folder PATH/train/<class>/*.png|jpg (+ optional PATH/test/<class>/*). Default: '
                 "Keras' cache ~/.keras/datasets/ (downloaded when absent)")
  g.add_argument('--trust-data', action='store_true',
                 help='accept an archive whose MD5 is not the official CIFAR-100 one')
  g.add_argument('--team-seed', type=int, default=d.team_seed,
                 help='team number: row of the class table, seed of the class rule and of the '
                 'eval split (default %(default)s)')
  g.add_argument('--num-classes', type=int, default=d.num_classes,
                 help='number of classes: 20/40/60/80 for the course (default 20 for CIFAR-100, '
                 'all classes of an image folder)')
  g.add_argument('--class-table', default=d.class_table, metavar='CSV_OR_URL',
                 help='course class table: row = team seed, N fine-label ids')
  g.add_argument('--classes', type=_csv, default=d.classes, metavar='A,B,...',
                 help='explicit classes (names or ids); overrides the table and the rule')
  g.add_argument('--eval-fraction', type=float, default=d.eval_fraction,
                 help='share of each class\'s training images held out as the eval split '
                 '(default %(default)s)')
  g.add_argument('--test-fraction', type=float, default=d.test_fraction,
                 help='image folders without test/: share of each class (its last files) used '
                 'as the test split (default %(default)s)')
  g.add_argument('--beam-workers', type=int, default=d.beam_workers,
                 help='Beam DirectRunner workers; 0 runs in-process (default %(default)s)')


def add_runner_flags(parser: argparse.ArgumentParser) -> None:
  r = RunnerConfig()
  g = parser.add_argument_group('outputs')
  g.add_argument('--output-dir', default=r.output_dir,
                 help='holds metadata.sqlite and pipeline_root/ (default %(default)s)')
  g.add_argument('--pipeline-name', default=r.pipeline_name, help='(default %(default)s)')
  g.add_argument('--no-cache', dest='enable_cache', action='store_false',
                 help='re-run every component even when its inputs did not change')


def build_parser(description: str) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=description)
  add_data_flags(parser)
  add_runner_flags(parser)
  return parser


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
  data = DataConfig(
      data=args.data, trust_data=args.trust_data, team_seed=args.team_seed,
      num_classes=args.num_classes, class_table=args.class_table, classes=args.classes,
      eval_fraction=args.eval_fraction, test_fraction=args.test_fraction,
      beam_workers=args.beam_workers)
  runner = RunnerConfig(pipeline_name=args.pipeline_name, output_dir=args.output_dir,
                        enable_cache=args.enable_cache)
  return PipelineConfig(data=data, runner=runner)


def check_writable_dir(path: str, flag: str = '--output-dir') -> None:
  """Creates `path` if needed and proves it writable, before any work starts."""
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path):
      pass
  except OSError as e:
    raise UserError(f'{flag} {path}: not writable ({e.strerror})') from e


def run_main(main: Callable[[Optional[Sequence[str]]], None],
             argv: Optional[Sequence[str]] = None) -> None:
  """Runs `main`, turning a UserError (even one wrapped by Beam or TFX) into one line, exit 2."""
  try:
    main(argv)
  except KeyboardInterrupt:
    sys.exit('interrupted')
  except Exception as e:  # pylint: disable=broad-except
    message = user_error_message(e)
    if message is None:
      raise
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)
