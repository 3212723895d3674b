"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata under --output-dir.

    python local_runner.py --data PATH [--team-seed 3 --num-classes 40 ...] [--verbose]
    python local_runner.py --help

The console shows the classes, one line per component as it starts and ends, Keras' progress and
the result; everything else (TensorFlow, TFX and Beam logs, warnings) goes to the run's log file
under <output-dir>/logs, whose path is printed (`pipeline.console`; --verbose shows it all).
"""
import datetime
import os
import sys
import time
from typing import Optional, Sequence

from base.errors import user_error_message
from pipeline import cli
from pipeline import console
from pipeline.data import resolve_data


def _result_lines(output_dir: str):
  """The run's result from ML Metadata, as `console.result_lines`."""
  from pipeline import runs  # pylint: disable=g-import-not-at-top
  from pipeline.evaluation import ACCURACY  # pylint: disable=g-import-not-at-top
  details = runs.run_details(runs.open_store(output_dir), runs.LATEST,
                             sections=('classes', 'evaluation', 'deployment'))
  return console.result_lines(details, output_dir, ACCURACY)


def build_parser():
  """Every flag of this runner: the pipeline's (`pipeline.cli`) and the console's."""
  parser = cli.build_parser('Train and evaluate image classifiers on a team\'s CIFAR-100 classes '
                            '(TFX, run locally).')
  cli.add_console_flags(parser)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = build_parser().parse_args(argv)
  config = cli.config_from_args(args)
  output_dir = config.runner.output_dir
  cli.check_writable_dir(output_dir)
  log = console.log_path(output_dir, datetime.datetime.now())
  with console.Console(log, verbose=args.verbose) as out:
    data, sizes = resolve_data(config.data)
    config = config.replace(data=data)
    out.line(f'{len(data.class_names)} classes from {data.source_path}: '
             f'{", ".join(data.class_names)}')
    out.line('images per split: ' + ', '.join(f'{k} {v:,}' for k, v in sizes.items()))
    out.line(f'log: {os.path.abspath(log)}')

    # TFX and TensorFlow take seconds to import: only once the data is known to be good.
    from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
    from pipeline.pipeline import check_config, create_pipeline  # pylint: disable=g-import-not-at-top
    config = check_config(config)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.runner.metadata_path)
    started = time.time()
    out.line(f'Pipeline {config.runner.pipeline_name}:')
    try:
      tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))
    except Exception as e:  # pylint: disable=broad-except
      # The traceback is in the log; the console gets the reason, and exit 2 (bad input) or 1.
      out.log(console.traceback_text(e))
      out.line(console.end_line(out.events.failed or out.events.current or 'pipeline',
                                console.FAILED, reason=console.failure_reason(e)))
      out.line(f'the full log: {os.path.abspath(log)}')
      raise SystemExit(2 if user_error_message(e) is not None else 1) from e
    out.line(f'Pipeline {config.runner.pipeline_name} finished in '
             f'{console.format_seconds(time.time() - started)}; artifacts in '
             f'{os.path.abspath(config.runner.pipeline_root)}')
    try:
      lines = _result_lines(output_dir)
    except Exception as e:  # pylint: disable=broad-except
      out.log(console.traceback_text(e))
      lines = [f'result unreadable ({console.failure_reason(e)}); see {os.path.abspath(log)}']
    for line in lines:
      out.line(line)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  cli.run_main(main, sys.argv[1:])
