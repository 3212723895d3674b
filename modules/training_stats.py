"""Training-time accounting written beside the model: step timing, parameters, memory, device.

`TrainingTimer` rides along `model.fit`; `collect` turns it and the trained model into the
JSON-serializable stats of `constants.TRAINING_STATS_FILE`, and `format_summary` into the lines
printed at the end of training.
"""
import math
import os
import resource
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from base import constants, machine
from modules import models

# Single-epoch steady state: skip at least this many first steps, or this fraction of the epoch.
_WARMUP_SKIP_STEPS = 5
_WARMUP_SKIP_FRACTION = 0.1
# /proc/cpuinfo flags recorded with the device: vector (AVX, FMA) and matrix (AMX) extensions.


class TrainingTimer(keras.callbacks.Callback):
  """Records epoch times, logs and step timing of `model.fit` for the training stats.

  Times never depend on the dataset's length (fit may run on an infinitely repeated dataset with
  `steps_per_epoch`). Steady-state time per step is the training time (first step to last step,
  excluding validation) of every epoch except the first of each `fit` call, which includes
  tracing, divided by its steps. When no such epoch exists (a single epoch), it uses the last
  epoch's steps after the first max(5, 10%) of them, always keeping at least one step.
  Successive `fit` calls with the same timer (e.g. fine-tuning phases) accumulate.
  Validation batches are timed too, for a time budget's estimate of an epoch
  (`last_validation_sec`).
  """

  def __init__(self, batch_size: int, clock: Callable[[], float] = time.perf_counter):
    super().__init__()
    self.batch_size = batch_size
    self._clock = clock
    self.epoch_times: List[float] = []  # seconds, epoch begin to end, validation included
    self.train_times: List[float] = []  # seconds, epoch begin to its last training step
    self.steps: List[int] = []  # training steps of each epoch
    self.first_in_fit: List[bool] = []
    self.logs: List[Dict[str, float]] = []
    self.total_time = 0.0  # seconds spent in fit, summed over fit calls
    self._fit_start = None
    self._epoch_start = None
    self._epoch_is_first = False
    self._batch_start = 0.0
    self._first_call_time = 0.0  # seconds of the current epoch's first batch call
    self._batch_ends: List[Tuple[int, float]] = []  # (steps done, time) in the current epoch
    self._last_epoch_batches: List[Tuple[int, float]] = []
    self._last_epoch_first_call_time = 0.0
    self._test_start = 0.0
    self._test_batch_ends: List[Tuple[int, float]] = []  # (steps done, time) of a validation
    self.validation_times: List[float] = []  # seconds of each validation run in fit
    self._last_validation_sec = 0.0
    self.last_epoch_end: Optional[float] = None  # the clock at the last epoch's end
    # What a `training.TimeBudget` measured and chose, when one chose the epochs.
    self.time_budget: Optional[Dict[str, Any]] = None

  def on_train_begin(self, logs=None):
    self._fit_start = self._clock()
    self._epoch_is_first = True

  def on_train_end(self, logs=None):
    if self._fit_start is not None:
      self.total_time += self._clock() - self._fit_start
      self._fit_start = None

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = self._clock()
    self._batch_ends = []

  def on_train_batch_begin(self, batch, logs=None):
    self._batch_start = self._clock()

  def on_train_batch_end(self, batch, logs=None):
    now = self._clock()
    if not self._batch_ends:
      self._first_call_time = now - self._batch_start
    # `batch` is the index of the first step of this call, which runs steps_per_execution steps
    # (fewer at the end of the epoch).
    steps_done = batch + getattr(self.model, 'steps_per_execution', 1)
    if self.params and self.params.get('steps'):
      steps_done = min(steps_done, self.params['steps'])
    self._batch_ends.append((steps_done, now))

  def on_test_begin(self, logs=None):
    self._test_start = self._clock()
    self._test_batch_ends = []

  def on_test_batch_end(self, batch, logs=None):
    self._test_batch_ends.append((batch + 1, self._clock()))

  def on_test_end(self, logs=None):
    now = self._clock()
    self.validation_times.append(now - self._test_start)
    ends = self._test_batch_ends
    if len(ends) >= 2:
      # The first batch traces the evaluation step: scale the later batches' time up to all.
      (first_done, first_end), (last_done, last_end) = ends[0], ends[-1]
      self._last_validation_sec = (last_end - first_end) * last_done / (last_done - first_done)
    else:
      self._last_validation_sec = now - self._test_start

  def last_validation_sec(self) -> float:
    """Steady-state seconds of the last validation run: its batches after the first (which
    traces), scaled to all its batches; its whole time when it had one batch; 0 if none ran."""
    return self._last_validation_sec

  def on_epoch_end(self, epoch, logs=None):
    now = self._clock()
    self.last_epoch_end = now
    self.epoch_times.append(now - self._epoch_start)
    last_step_end = self._batch_ends[-1][1] if self._batch_ends else now
    self.train_times.append(last_step_end - self._epoch_start)
    self.steps.append(self._batch_ends[-1][0] if self._batch_ends else 0)
    self.first_in_fit.append(self._epoch_is_first)
    self._epoch_is_first = False
    epoch_logs = {key: float(value) for key, value in (logs or {}).items()}
    optimizer = getattr(self.model, 'optimizer', None)
    if 'learning_rate' not in epoch_logs and optimizer is not None:
      # The rate the schedule reached by the end of the epoch (ReduceLROnPlateau logs its own).
      epoch_logs['learning_rate'] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    self.logs.append(epoch_logs)
    self._last_epoch_batches = self._batch_ends
    self._last_epoch_first_call_time = self._first_call_time

  def steady_state(self) -> Tuple[Optional[float], str]:
    """Returns (ms per step, description of the steps it was measured on)."""
    steady = [i for i, first in enumerate(self.first_in_fit) if not first]
    steps = sum(self.steps[i] for i in steady)
    if steps > 0:
      seconds = sum(self.train_times[i] for i in steady)
      return 1000 * seconds / steps, f'{steps} steps of {len(steady)} epoch(s) after the first'
    return self.last_epoch_ms_per_step()

  def last_epoch_ms_per_step(self) -> Tuple[Optional[float], str]:
    """(ms per step, description) of the last epoch alone: its steps after the first max(5, 10%)
    of them (tracing, input warm-up), always keeping at least one batch call."""
    batches = self._last_epoch_batches
    if not batches:
      return None, 'no training step recorded'
    total = batches[-1][0]
    if len(batches) == 1:
      return (1000 * self._last_epoch_first_call_time / total,
              f'the only {total} step(s), tracing included')
    skip = max(_WARMUP_SKIP_STEPS, math.ceil(_WARMUP_SKIP_FRACTION * total))
    # The last batch call that ends at or before `skip` steps, keeping at least one call after it.
    start = max([i for i, (done, _) in enumerate(batches[:-1]) if done <= skip] or [0])
    start_steps, start_time = batches[start]
    ms = 1000 * (batches[-1][1] - start_time) / (total - start_steps)
    return ms, f'epoch {len(self.steps)}, steps {start_steps + 1}-{total} of {total}'


def device_info() -> Dict[str, Any]:
  """The accelerator the training ran on (first GPU, else the CPU) and the CPU cores."""
  cpu_model = machine.cpu_model()
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    device_type, device_name = 'GPU', details.get('device_name', gpus[0].name)
  else:
    device_type, device_name = 'CPU', cpu_model
  return {
      'device_type': device_type,
      'device_name': device_name,
      'gpu_count': len(gpus),
      'cpu_model': cpu_model,
      'cpu_cores': os.cpu_count(),
      'cpu_simd_flags': machine.simd_flags(),
  }


def _history(logs: List[Dict[str, float]], key: str) -> List[Optional[float]]:
  return [epoch_logs.get(key) for epoch_logs in logs]


def collect(timer: TrainingTimer,
            model: keras.Model,
            extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Collects the training-time accounting into a JSON-serializable dict.

  Args:
    timer: the `TrainingTimer` passed to `model.fit`.
    model: the trained model (for its parameter counts).
    extra: more entries to record (model name, hyperparameters...); must not reuse a key.

  Returns:
    A flat dict: per-epoch times and logs, steady-state ms/step and examples/s, total training
    time, parameter counts, peak host memory and the device; with a time budget, what it
    measured and chose (`time_budget`).
  """
  ms_per_step, rule = timer.steady_state()
  trainable_params, total_params = models.count_params(model)
  val_accuracy = [v for v in _history(timer.logs, constants.VAL_ACCURACY) if v is not None]
  best_epoch = None
  if val_accuracy:
    best_epoch = max(range(len(timer.logs)),
                     key=lambda i: timer.logs[i].get(constants.VAL_ACCURACY, -1))
  stats = {
      'epochs': len(timer.epoch_times),
      'batch_size': timer.batch_size,
      'steps_per_epoch': list(timer.steps),
      'epoch_time_sec': list(timer.epoch_times),
      'epoch_train_time_sec': list(timer.train_times),
      'train_loss': _history(timer.logs, 'loss'),
      'train_accuracy': _history(timer.logs, constants.ACCURACY),
      'val_loss': _history(timer.logs, 'val_loss'),
      constants.VAL_ACCURACY: _history(timer.logs, constants.VAL_ACCURACY),
      'learning_rate': _history(timer.logs, 'learning_rate'),
      'best_val_accuracy': max(val_accuracy) if val_accuracy else None,
      'best_epoch': best_epoch + 1 if best_epoch is not None else None,
      'ms_per_step': ms_per_step,
      'examples_per_sec': 1000 * timer.batch_size / ms_per_step if ms_per_step else None,
      'steady_state_steps': rule,
      'total_training_time_sec': timer.total_time,
      'trainable_params': trainable_params,
      'total_params': total_params,
      # Peak of the whole process (a TFX in-process run includes the components before Trainer).
      'peak_host_memory_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'precision': keras.mixed_precision.global_policy().name,
      'tensorflow_version': tf.__version__,
      'keras_version': keras.__version__,
      **device_info(),
  }
  if timer.time_budget is not None:
    stats['time_budget'] = timer.time_budget
  for key, value in (extra or {}).items():
    if key in stats:
      raise ValueError(f'extra key {key!r} would overwrite a measured statistic.')
    stats[key] = value
  return stats


def format_summary(stats: Dict[str, Any]) -> str:
  """A few human-readable lines summarizing `collect`'s stats for the end of training."""

  def number(key, fmt):
    value = stats.get(key)
    return 'n/a' if value is None else format(value, fmt)

  total = stats.get('total_training_time_sec') or 0.0
  budget = stats.get('time_budget')
  budget_lines = []
  if budget and budget.get('epochs_chosen') is not None:
    budget_lines = [
        f'Time budget: {budget["budget_minutes"]:g} min; {budget["epoch_sec"]:.1f} s/epoch '
        f'({budget["ms_per_step"]:.1f} ms/step, {budget["validation_sec_per_epoch"]:.1f} s '
        f'validation, {budget.get("epoch_end_sec", 0.0):.1f} s saving the epoch) measured after '
        f'{budget["decided_after_sec"]:.0f} s: '
        f'{budget["epochs_chosen"]} of at most {budget["max_epochs"]} epochs; trained in '
        f'{budget["training_sec"] / 60:.1f} min']
  lines = [
      f'Training: {stats.get("epochs", 0)} epochs in {total / 60:.1f} min ({total:.1f} s); '
      f'{number("ms_per_step", ".1f")} ms/step, {number("examples_per_sec", ",.0f")} examples/s '
      f'at batch {stats.get("batch_size")} (steady state: {stats.get("steady_state_steps")})',
      f'Parameters: {number("total_params", ",d")} total, '
      f'{number("trainable_params", ",d")} trainable',
      f'Best val accuracy: {number("best_val_accuracy", ".4f")} '
      f'(epoch {stats.get("best_epoch") or "n/a"})',
      f'Device: {stats.get("device_type")} {stats.get("device_name")} '
      f'({stats.get("cpu_cores")} CPU cores); precision {stats.get("precision")}; '
      f'peak host memory {number("peak_host_memory_mib", ",.0f")} MiB',
  ]
  return '\n'.join(lines[:1] + budget_lines + lines[1:])
