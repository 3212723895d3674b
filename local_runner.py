"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata under --output-dir.

    python local_runner.py --data PATH [--team-seed 3 --num-classes 40 ...] [--verbose]
    python local_runner.py --help

The console shows the classes, one line per component as it starts and ends, Keras' progress and
the result; everything else (TensorFlow, TFX and Beam logs, warnings) goes to the run's log file
under <output-dir>/logs, whose path is printed (`pipeline.console`; --verbose shows it all).
"""
import contextlib
import datetime
import fcntl
import glob
import os
import shutil
import sys
import time
from typing import Iterator, List, Optional, Sequence

from base.errors import os_error_message, user_error_message
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


LOCK_FILE = '.run.lock'  # in --output-dir: one run at a time writes there


@contextlib.contextmanager
def output_dir_lock(output_dir: str) -> Iterator[None]:
  """Holds an exclusive lock on the output dir for the run; a second run waits for it, saying so.

  Two LocalDagRunners on one folder would each run the same components at the same time (the
  cache only knows finished executions), and SQLite's own locking makes the loser's writes fail
  with "database is locked" mid-run. Waiting, rather than stopping, lets a queue of runs (two
  terminals, a script) all complete; Ctrl-C stops the one waiting. The kernel releases the lock
  when its process ends in any way, kill -9 included: no stale lock to clean up by hand.
  """
  fd = os.open(os.path.join(output_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors='replace').strip() or 'another run'
      print(f'{os.path.abspath(output_dir)} is in use by {holder}; waiting for it to finish '
            '(Ctrl-C to stop)', flush=True)
      fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'run {os.getpid()} started {datetime.datetime.now():%H:%M:%S}'.encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock


def close_killed_executions(metadata_path: str, pipeline_root: str) -> List[str]:
  """Marks CANCELED the executions a killed run left NEW or RUNNING, removes their partial
  output folders, and returns one console line per component.

  Called while holding `output_dir_lock`, so no live run owns them. TFX never publishes such an
  execution (its outputs are not in ML Metadata and the cache never reuses them; the component
  runs again), but it stays RUNNING forever, and its half-written folders
  (`pipeline_root/<component>/<output>/<execution id>/`) stay on disk.
  """
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(metadata_path):
    return []
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  store = metadata_store.MetadataStore(config)
  states = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
  killed = [e for e in store.get_executions() if e.last_known_state in states]
  node_type = store.get_context_type('node').id if killed else None
  lines = []
  for execution in killed:
    nodes = [c.name.split('.', 1)[-1] for c in store.get_contexts_by_execution(execution.id)
             if c.type_id == node_type]
    component = nodes[0] if nodes else f'execution {execution.id}'
    execution.last_known_state = metadata_store_pb2.Execution.CANCELED
    store.put_executions([execution])
    removed = 0
    if nodes:
      node_dir = os.path.join(pipeline_root, component)
      for folder in (glob.glob(os.path.join(node_dir, '*', str(execution.id))) +
                     glob.glob(os.path.join(node_dir, '.system', '*', str(execution.id)))):
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    lines.append(f'  {component}: an earlier run was stopped while it ran; marked CANCELED, '
                 f'{removed} partial output folder(s) removed; it runs again')
  return lines


def build_parser():
  """Every flag of this runner: the pipeline's (`pipeline.cli`) and the console's."""
  parser = cli.build_parser('Train and evaluate image classifiers on a team\'s CIFAR-100 classes '
                            '(TFX, run locally).')
  cli.add_console_flags(parser)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = build_parser().parse_args(argv)
  config = cli.config_from_args(args)
  cli.check_writable_dir(config.runner.output_dir)
  with output_dir_lock(config.runner.output_dir):
    _run(args, config)


def _run(args, config) -> None:
  """The run, once its output dir is locked."""
  output_dir = config.runner.output_dir
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
    for line in close_killed_executions(config.runner.metadata_path, config.runner.pipeline_root):
      out.line(line)
    try:
      tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))
    except Exception as e:  # pylint: disable=broad-except
      # The traceback is in the log; the console gets the reason, and exit 2 (bad input) or 1.
      out.log(console.traceback_text(e))
      out.line(console.end_line(out.events.failed or out.events.current or 'pipeline',
                                console.FAILED, reason=console.failure_reason(e)))
      out.line(f'the full log: {os.path.abspath(log)}')
      fixable = user_error_message(e) is not None or os_error_message(e) is not None
      raise SystemExit(2 if fixable else 1) from e
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
