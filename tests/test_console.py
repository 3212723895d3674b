"""A local run's console: its lines, its routing (console vs log file), and one real run."""
import datetime
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest

from base.errors import UserError
from pipeline import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- pure functions ------------

def test_log_path_is_per_run_under_the_output_dir():
  path = console.log_path('/out', datetime.datetime(2026, 1, 2, 3, 4, 5))
  assert path == '/out/logs/run-20260102-030405.log'


@pytest.mark.parametrize('message,expected', [
    ('Component Transform is running.', ('start', 'Transform')),
    ('Component Transform is finished.', ('finish', 'Transform')),
    ('A cached execution 12 is used.', ('cached', None)),
    ('Execution 7 failed.', ('failed', None)),
    ('Skipping component Tuner.', ('skipped', 'Tuner')),
    ('Going to run a new execution 7', None),
    ('Component Transform is running. (more)', None),
])
def test_node_events_from_tfx_log_lines(message, expected):
  assert console.node_event(message) == expected


def test_tfx_still_logs_the_lines_the_console_parses():
  """The messages `node_event` reads, in the installed TFX's own source."""
  import tfx  # pylint: disable=g-import-not-at-top
  base = os.path.join(os.path.dirname(tfx.__file__), 'orchestration')
  with open(os.path.join(base, 'local', 'local_dag_runner.py')) as f:
    runner = f.read()
  with open(os.path.join(base, 'portable', 'launcher.py')) as f:
    launcher = f.read()
  for text in ("'Component %s is running.'", "'Component %s is finished.'",
               "'Skipping component %s.'"):
    assert text in runner
  for text in ("'A cached execution %d is used.'", "'Execution %d failed.'"):
    assert text in launcher


@pytest.mark.parametrize('seconds,text', [(0.42, '0.4 s'), (12.4, '12 s'), (185, '3 min 05 s')])
def test_format_seconds(seconds, text):
  assert console.format_seconds(seconds) == text


def test_component_lines():
  assert console.start_line('Transform') == '  Transform ...'
  assert console.end_line('Transform', console.FINISH, 12.2) == '  Transform done in 12 s'
  assert console.end_line('Transform', console.CACHED, 3.0) == '  Transform cached'
  assert (console.end_line('Trainer', console.FAILED, reason='ValueError: bad')
          == '  Trainer failed: ValueError: bad')


def test_failure_reason_prefers_the_user_error():
  try:
    try:
      raise UserError('images of class x are 16x16; expected 32x32')
    except UserError as e:
      raise RuntimeError('Beam wrapped it\nwith more lines') from e
  except RuntimeError as wrapped:
    assert console.failure_reason(wrapped) == 'images of class x are 16x16; expected 32x32'
  assert console.failure_reason(ValueError('first\nlast line')) == 'ValueError: last line'
  assert console.failure_reason(RuntimeError()) == 'RuntimeError'
  assert console.failure_reason(KeyError('k')) == "KeyError: 'k'"


def test_node_events_time_and_mark_cached_and_failed_components():
  lines, now = [], [100.0]
  events = console.NodeEvents(lines.append, clock=lambda: now[0])
  logger = logging.getLogger('test_console.events')
  logger.propagate = False
  logger.setLevel(logging.INFO)
  logger.addHandler(events)
  try:
    logger.info('Component %s is running.', 'StatisticsGen')
    logger.info('A cached execution %d is used.', 3)
    logger.info('Component %s is finished.', 'StatisticsGen')
    logger.info('Component %s is running.', 'Transform')
    now[0] = 112.3
    logger.info('Going to run a new execution %d', 4)
    logger.info('Component %s is finished.', 'Transform')
    logger.info('Component %s is running.', 'Trainer')
    logger.error('Execution %d failed.', 5)
  finally:
    logger.removeHandler(events)
  assert lines == ['  StatisticsGen ...', '  StatisticsGen cached', '  Transform ...',
                   '  Transform done in 12 s', '  Trainer ...']
  assert events.failed == 'Trainer'


def test_result_lines():
  details = {
      'run': {'run_id': '2026-01-02T03:04:05.123456'},
      'evaluation': {'overall': {'acc': 0.41234}},
      'deployment': {'blessed': True, 'pushed': True, 'pushed_destination': '/srv/model/17'},
      'absent': {},
  }
  assert console.result_lines(details, 'out', 'acc') == [
      'test accuracy 0.412',
      'model blessed; pushed to /srv/model/17',
      'inspect the run: python -m pipeline.inspect --output-dir out --run '
      '2026-01-02T03:04:05.123456',
  ]
  unblessed = {**details, 'deployment': {'blessed': False, 'pushed': False}}
  assert console.result_lines(unblessed, 'out', 'acc')[1] == 'model NOT blessed; not pushed'
  missing = {'run': {'run_id': 'r'}, 'evaluation': None, 'deployment': None,
             'absent': {'evaluation': 'Evaluator did not run'}}
  assert console.result_lines(missing, 'out', 'acc')[0] == (
      'test accuracy: none (Evaluator did not run)')


# ---------------------------------------------------------------- routing -------------------

# Every layer's kind of output, inside a Console: a C-level write to fd 2 and fd 1, a subprocess, a
# Python warning, a logging record, a Python print, and a console line.
_ROUTING_SCRIPT = '''
import logging, os, subprocess, sys, warnings
from pipeline import console
with console.Console(sys.argv[1], verbose=sys.argv[2] == 'verbose') as out:
  os.write(2, b'c-level stderr\\n')
  os.write(1, b'c-level stdout\\n')
  subprocess.run([sys.executable, '-c', 'print("from a subprocess")'])
  warnings.warn('a library warning', FutureWarning)
  from absl import logging as absl_logging
  verbosity = absl_logging.get_verbosity()  # what TensorFlow's autotrackable.py does
  absl_logging.set_verbosity(absl_logging.FATAL)
  absl_logging.set_verbosity(verbosity)
  absl_logging.info('an absl info line')
  print('a python print', flush=True)
  out.line('a console line')
print('after the run')
'''
_NOISE = ('c-level stderr', 'c-level stdout', 'from a subprocess', 'a library warning',
          'an absl info line')


def _route(tmp_path, mode):
  log = tmp_path / 'logs' / 'run.log'
  result = subprocess.run([sys.executable, '-c', _ROUTING_SCRIPT, str(log), mode],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
  assert result.returncode == 0, result.stderr
  return result.stdout + result.stderr, log.read_text()


def test_routing_shows_prints_and_console_lines_and_logs_the_rest(tmp_path):
  terminal, log = _route(tmp_path, 'quiet')
  assert terminal.splitlines() == ['a python print', 'a console line', 'after the run']
  for text in _NOISE + ('a console line',):
    assert text in log, text


def test_verbose_routing_shows_everything_and_still_logs_it(tmp_path):
  terminal, log = _route(tmp_path, 'verbose')
  for text in _NOISE + ('a python print', 'a console line', 'after the run'):
    assert text in terminal, text
  for text in _NOISE + ('a console line',):
    assert text in log, text


# ---------------------------------------------------------------- warnings filter -----------

def test_the_projects_own_warnings_are_not_filtered():
  """pytest.ini ignores named third-party warnings only: a project module's warning surfaces."""
  import base.machine  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings(record=True) as caught:
    warnings.warn_explicit('a project warning', FutureWarning, base.machine.__file__, 1,
                           module='base.machine')
    warnings.warn_explicit('a project deprecation', DeprecationWarning, base.machine.__file__, 1,
                           module='pipeline.cli')
  assert [str(w.message) for w in caught] == ['a project warning', 'a project deprecation']


# ---------------------------------------------------------------- one real run --------------

_KERAS_PROGRESS = re.compile(r'^(Epoch \d+/\d+|\d+/\d+ .*step)')


def _run_local(args, output_dir, timeout=1500):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'local_runner.py'), *args, '--output-dir',
       str(output_dir)],
      capture_output=True, text=True, cwd=ROOT, timeout=timeout,
      env={**os.environ, 'PYTHONHASHSEED': '0'})


def _logged_path(terminal: str) -> str:
  paths = re.findall(r'log: (\S+\.log)', terminal)
  assert paths, terminal
  return paths[-1]


@pytest.fixture(scope='module')
def one_epoch_run(cifar_archive, tmp_path_factory):
  """A real one-epoch run of local_runner.py: (completed process, console text, log text)."""
  out = tmp_path_factory.mktemp('console_run')
  result = _run_local(['--data', cifar_archive[0], '--trust-data', '--team-seed', '2',
                       '--num-classes', '20', '--model', 'simple_cnn', '--epochs', '1',
                       '--batch-size', '32'], out)
  terminal = result.stdout + result.stderr
  assert result.returncode == 0, terminal[-3000:]
  with open(_logged_path(terminal)) as f:
    return result, terminal, f.read(), str(out)


@pytest.mark.e2e
def test_run_console_shows_progress_and_result(one_epoch_run):
  _, terminal, _, out = one_epoch_run
  lines = terminal.splitlines()
  assert lines[0].startswith('20 classes from ') and 'images per split: train ' in terminal
  components = ('Cifar100ExampleGen', 'StatisticsGen', 'SchemaGen', 'CuratedSchemaGen',
                'ExampleValidator', 'ValidationGate', 'Transform', 'Trainer', 'Evaluator',
                'Pusher')
  for component in components:
    starts = [l for l in lines if l == f'  {component} ...']
    ends = [l for l in lines if re.fullmatch(rf'  {component} (done in .+|cached)', l)]
    assert len(starts) == 1 and len(ends) == 1, (component, terminal)
  assert re.search(r'^test accuracy \d\.\d{3}$', terminal, re.M), terminal
  assert re.search(r'^model (NOT )?blessed; ', terminal, re.M), terminal
  assert re.search(rf'^inspect the run: python -m pipeline.inspect --output-dir {re.escape(out)} '
                   r'--run \S+$', terminal, re.M), terminal
  assert any(_KERAS_PROGRESS.match(l) for l in lines), terminal  # Keras' progress is shown


@pytest.mark.e2e
def test_run_console_hides_the_noise_and_logs_it(one_epoch_run):
  _, terminal, log, _ = one_epoch_run
  for noise in ('FutureWarning', 'cuFFT', "adding '", 'pip install', 'Traceback'):
    assert noise not in terminal, noise
  others = [l for l in terminal.splitlines() if not _KERAS_PROGRESS.match(l)]
  assert len(others) <= 40, terminal
  # TensorFlow's CUDA start-up noise (cuFFT on 2.16, cuInit on 2.21) is kept, in the log.
  assert 'cuda' in log.lower()
  assert 'Component Trainer is running.' in log
  assert "adding '" not in log  # no user-code wheel is built any more


@pytest.mark.e2e
def test_failing_component_prints_its_reason_and_the_log(cifar_archive, tmp_path):
  """A pipeline root that cannot be created (a file is in its place) fails the first component
  once it starts: the console names it and the reason, the traceback is in the log."""
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'pipeline_root').write_text('a file where the pipeline root belongs')
  result = _run_local(['--data', cifar_archive[0], '--trust-data', '--team-seed', '2',
                       '--num-classes', '20', '--model', 'simple_cnn', '--epochs', '1'],
                      out, timeout=900)
  terminal = result.stdout + result.stderr
  assert result.returncode == 1, terminal
  failed = [l for l in terminal.splitlines() if ' failed: ' in l]
  assert len(failed) == 1 and failed[0].startswith('  Cifar100ExampleGen failed: '), terminal
  assert 'pipeline_root' in failed[0]
  assert 'Traceback' not in terminal
  with open(_logged_path(terminal)) as f:
    assert 'Traceback' in f.read()  # the details are in the log
