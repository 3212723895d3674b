"""What a local run shows on the console, and where everything else goes (its log file).

A run's output comes from many layers: TensorFlow's C++ (cuFFT/cuDNN/TensorRT lines on fd 2),
Python warnings (google.api_core's FutureWarnings at import), absl/TFX and Beam logging, and
subprocesses (Beam workers). Filtering each layer misses the next library's noise, so `Console`
routes by file descriptor instead: for the run, fds 1 and 2 point at `<output-dir>/logs/
run-<time>.log`, with Python logging (INFO and up) and warnings written there too, while
`sys.stdout` keeps writing to the terminal: Python-level prints (Keras' per-epoch progress, the
Trainer's summary) stay visible and C-level and subprocess output is logged. The run's own lines
(the classes, one line per component as it starts and ends, the result) are written by
`Console.line` to the terminal and the log. With `verbose`, fds 1 and 2 go through a pipe that
copies everything to the terminal as well as to the log.

Component start and end lines come from the per-node log lines of TFX's LocalDagRunner and
Launcher (`NodeEvents`), timed here.
"""
import datetime
import logging
import os
import re
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from absl import logging as absl_logging

from base.errors import os_error_message, user_error_message

LOG_DIR = 'logs'

# Node-level log lines of tfx/orchestration/local/local_dag_runner.py and portable/launcher.py.
START, FINISH, CACHED, FAILED, SKIPPED = 'start', 'finish', 'cached', 'failed', 'skipped'
_EVENTS = (
    (re.compile(r'^Component (\S+) is running\.$'), START),
    (re.compile(r'^Component (\S+) is finished\.$'), FINISH),
    (re.compile(r'^Skipping component (\S+)\.$'), SKIPPED),
    (re.compile(r'^A cached execution \d+ is used\.$'), CACHED),
    (re.compile(r'^Execution \d+ failed\.$'), FAILED),
)


def log_path(output_dir: str, now: datetime.datetime) -> str:
  """`<output-dir>/logs/run-YYYYmmdd-HHMMSS.log`: one file per run, sorted by time."""
  return os.path.join(output_dir, LOG_DIR, f'run-{now:%Y%m%d-%H%M%S}.log')


def node_event(message: str) -> Optional[Tuple[str, Optional[str]]]:
  """(event, component id or None) for a TFX per-node log message, else None."""
  for pattern, event in _EVENTS:
    match = pattern.match(message)
    if match:
      return event, (match.group(1) if match.groups() else None)
  return None


def format_seconds(seconds: float) -> str:
  """'0.4 s', '12 s', '3 min 05 s'."""
  if seconds < 1:
    return f'{seconds:.1f} s'
  if seconds < 60:
    return f'{seconds:.0f} s'
  minutes, rest = divmod(int(round(seconds)), 60)
  return f'{minutes} min {rest:02d} s'


def start_line(component: str) -> str:
  return f'  {component} ...'


def end_line(component: str, event: str, seconds: float = 0.0, reason: str = '') -> str:
  """'  Transform done in 12 s' / '  Transform cached' / '  Transform failed: reason'."""
  if event == CACHED:
    return f'  {component} cached'
  if event == FAILED:
    return f'  {component} failed: {reason}'
  if event == SKIPPED:
    return f'  {component} skipped'
  return f'  {component} done in {format_seconds(seconds)}'


def failure_reason(exc: BaseException) -> str:
  """The UserError message when `exc` carries one (even wrapped by Beam or TFX), or the path and
  reason of a disk-full or permission error, else the exception's class and the last line of its
  message ('FailedPreconditionError: ...')."""
  message = user_error_message(exc)
  if message is None:
    message = os_error_message(exc)
  if message is not None:
    return message
  lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
  return f'{type(exc).__name__}: {lines[-1]}' if lines else type(exc).__name__


def traceback_text(exc: BaseException) -> str:
  return ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class NodeEvents(logging.Handler):
  """Turns TFX's per-node log records into start and end lines, timed with a clock."""

  def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
    super().__init__(logging.INFO)
    self._write, self._clock = write, clock
    self.current: Optional[str] = None  # the component running now (None between components)
    self.failed: Optional[str] = None
    self._started, self._cached = 0.0, False

  def emit(self, record: logging.LogRecord) -> None:
    try:
      event = node_event(record.getMessage())
    except Exception:  # pylint: disable=broad-except
      return  # a badly formatted record of some library: not ours to report
    if event is None:
      return
    kind, component = event
    if kind == START:
      self.current, self._started, self._cached = component, self._clock(), False
      self._write(start_line(component))
    elif kind == CACHED:
      self._cached = True
    elif kind == SKIPPED:
      self._write(end_line(component, SKIPPED))
    elif kind == FAILED:
      self.failed = self.current
    elif kind == FINISH:
      self._write(end_line(component, CACHED if self._cached else FINISH,
                           self._clock() - self._started))
      self.current = None


class Console:
  """Context manager for one run: routes output (see the module docstring) and writes its lines.

  Use `line(text)` for what the user must see; everything else is in `path`.
  """

  def __init__(self, path: str, verbose: bool = False):
    self.path, self.verbose = path, verbose
    self.events: Optional[NodeEvents] = None
    self._log_fd = -1
    self._saved = {}
    self._terminal: Optional[TextIO] = None
    self._streams = None
    self._tee: Optional[threading.Thread] = None
    self._handler: Optional[logging.Handler] = None
    self._root_level = logging.WARNING
    self._absl_verbosity = absl_logging.WARNING

  def __enter__(self) -> 'Console':
    os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    self._log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    self._saved = {fd: os.dup(fd) for fd in (1, 2)}
    self._terminal = os.fdopen(os.dup(self._saved[1]), 'w', buffering=1)
    self._streams = (sys.stdout, sys.stderr)
    if self.verbose:
      read_end, write_end = os.pipe()
      self._tee = threading.Thread(target=_copy, args=(read_end, (self._log_fd, self._saved[1])),
                                   daemon=True)
      self._tee.start()
      for fd in (1, 2):
        os.dup2(write_end, fd)
      os.close(write_end)
    else:
      for fd in (1, 2):
        os.dup2(self._log_fd, fd)
      sys.stdout = self._terminal  # Keras' progress and other Python prints stay visible
    root = logging.getLogger()
    self._root_level = root.level
    root.setLevel(logging.INFO)
    # TFX logs through absl, whose level is its verbosity flag: TensorFlow resets the 'absl'
    # logger to that flag's value (autotrackable.py), so set the flag, not the logger.
    self._absl_verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    # sys.stderr writes to fd 2: the log (and, verbose, the terminal). Warnings go there too.
    self._handler = logging.StreamHandler(sys.stderr)
    self._handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    root.addHandler(self._handler)
    self.events = NodeEvents(self.line)
    root.addHandler(self.events)
    return self

  def line(self, text: str) -> None:
    """One line for the user: on the terminal, and in the log."""
    self._terminal.write(text + '\n')
    self._terminal.flush()
    os.write(self._log_fd, (text + '\n').encode())

  def log(self, text: str) -> None:
    """Into the log only (e.g. a failure's traceback)."""
    os.write(self._log_fd, (text.rstrip('\n') + '\n').encode())

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc is not None and not isinstance(exc, SystemExit):
      self.log(''.join(traceback.format_exception(exc_type, exc, tb)))
    root = logging.getLogger()
    for handler in (self._handler, self.events):
      root.removeHandler(handler)
    root.setLevel(self._root_level)
    absl_logging.set_verbosity(self._absl_verbosity)
    for stream in (sys.stdout, sys.stderr):
      stream.flush()
    sys.stdout, sys.stderr = self._streams
    for fd in (1, 2):
      os.dup2(self._saved[fd], fd)
    if self._tee is not None:
      # EOF once no process holds the pipe any more; Beam workers may outlive the run briefly.
      self._tee.join(timeout=2)
    for fd in self._saved.values():
      os.close(fd)
    self._terminal.close()
    os.close(self._log_fd)


def _copy(source: int, targets: Tuple[int, ...]) -> None:
  """Copies a pipe to each target fd until every writer has closed it."""
  while True:
    chunk = os.read(source, 65536)
    if not chunk:
      break
    for target in targets:
      try:
        os.write(target, chunk)
      except OSError:
        pass
  os.close(source)


def inspect_command(output_dir: str, run_id: str) -> str:
  return f'python -m pipeline.inspect --output-dir {output_dir} --run {run_id}'


def result_lines(details: Dict[str, Any], output_dir: str, accuracy_key: str) -> List[str]:
  """The end of a run: test accuracy, blessing, where the model went, how to inspect the run.

  Args:
    details: `pipeline.runs.run_details` of the run (its 'evaluation' and 'deployment' sections).
    output_dir: the run's --output-dir, for the inspect command.
    accuracy_key: the accuracy metric's name in the evaluation's 'overall' metrics.
  """
  absent = details.get('absent') or {}
  evaluation, deployment = details.get('evaluation'), details.get('deployment')
  if evaluation:
    overall = evaluation.get('overall') or {}
    accuracy = overall.get(accuracy_key)
    shown = '-' if accuracy is None else f'{accuracy:.3f}'
    lines = [f'test accuracy {shown}']
  else:
    lines = [f'test accuracy: none ({absent.get("evaluation", "no evaluation")})']
  if deployment:
    blessed = 'blessed' if deployment.get('blessed') else 'NOT blessed'
    if deployment.get('pushed'):
      where = f'pushed to {deployment.get("pushed_destination")}'
    else:
      where = 'not pushed'
    lines.append(f'model {blessed}; {where}')
  run_id = (details.get('run') or {}).get('run_id')
  if run_id:
    lines.append(f'inspect the run: {inspect_command(output_dir, run_id)}')
  return lines
