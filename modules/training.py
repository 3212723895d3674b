"""Training building blocks that the Trainer's `run_fn` composes.

Pure functions, each testable on its own: optimizers, learning-rate schedules and callbacks, the
label-smoothed loss and the accuracy metric, mixed precision and argument validation.
Augmentation lives in `augmentation`, the training-time accounting in `training_stats`.

The model outputs logits; labels are integer class ids shaped [B] or [B, 1].
"""
import contextlib
import math
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf
from absl import logging

from base import constants, machine
from modules import augmentation as augmentation_lib

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop', 'muon')
SCHEDULES = ('constant', 'cosine', 'plateau')
PRECISIONS = ('auto', 'float32', 'mixed_float16', 'mixed_bfloat16')
# GPUs with tensor cores (compute capability 7.0+: V100, T4, A100, ...) run float16 fast.
_MIN_FLOAT16_COMPUTE_CAPABILITY = (7, 0)

# Parameters that weight decay leaves alone: biases and normalization scales/offsets (Keras
# variable names), as in AdamW practice: decaying them only fights the normalization.
_NO_DECAY_VARIABLE_NAMES = ('bias', 'gamma', 'beta')

# ReduceLROnPlateau: multiply the rate by this factor after this many epochs without a new best.
_PLATEAU_FACTOR = 0.2
_PLATEAU_PATIENCE = 3
_PLATEAU_MIN_LR = 1e-6

LearningRate = Union[float, keras.optimizers.schedules.LearningRateSchedule]


def _check_choice(kind: str, value: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ValueError(f'Unknown {kind} {value!r}; expected one of: {", ".join(choices)}.')


# --- optimizer, schedule and callbacks ---


def make_optimizer(name: str,
                   learning_rate: LearningRate,
                   weight_decay: float = 0.0,
                   momentum: float = 0.9,
                   nesterov: bool = True,
                   decay_bias_and_norm: bool = False) -> keras.optimizers.Optimizer:
  """Builds a Keras optimizer by name.

  Args:
    name: one of `OPTIMIZERS`: 'adam', 'adamw', 'sgd' (with momentum, Nesterov), 'rmsprop' or
      'muon' (`Muon`: orthogonalized steps for convolution kernels, SGD for the rest).
    learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
    weight_decay: decoupled weight decay. Keras 3 applies it the same way in every optimizer
      (`w -= w * weight_decay * current_lr` each step), so 'adam' with weight decay behaves like
      'adamw'. 0 turns it off (AdamW then is plain Adam).
    momentum: SGD momentum (RMSprop keeps Keras' default of no momentum).
    nesterov: SGD Nesterov momentum.
    decay_bias_and_norm: also decay biases and normalization gamma/beta (off by default).

  Returns:
    An unbuilt `keras.optimizers.Optimizer`.
  """
  _check_choice('optimizer', name, OPTIMIZERS)
  decay = float(weight_decay) if weight_decay > 0 else None
  if name == 'adam':
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=decay)
  elif name == 'adamw':
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate,
                                       weight_decay=float(weight_decay))
  elif name == 'sgd':
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate,
                                     momentum=momentum,
                                     nesterov=nesterov,
                                     weight_decay=decay)
  elif name == 'muon':
    optimizer = Muon(learning_rate=learning_rate,
                     momentum=momentum,
                     nesterov=nesterov,
                     weight_decay=decay)
  else:
    optimizer = keras.optimizers.RMSprop(learning_rate=learning_rate, weight_decay=decay)
  if weight_decay > 0 and not decay_bias_and_norm:
    optimizer.exclude_from_weight_decay(var_names=list(_NO_DECAY_VARIABLE_NAMES))
  return optimizer


# Newton-Schulz coefficients of Muon (Keller Jordan, 2024): a quintic iteration whose slope at 0 is
# as steep as it can be, so that 3 steps bring every singular value of the step to roughly 0.5-1.5
# instead of exactly 1, which trains as well as the exact U V^T at a fraction of the cost.
_NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
_NEWTON_SCHULZ_STEPS = 3
# Muon moves convolution kernels at this fraction of the learning rate: their steps are relative
# (an orthogonal matrix against a kernel of fixed norm), the rest takes SGD steps at the full rate.
# With airbench's 0.1, kernels at 0.05 and 0.1 tied after 8 epochs and 0.2 lost (docs/results.md,
# "Muon"); the lower of the two suits longer runs.
MUON_KERNEL_RATE_FACTOR = 0.5
_MUON_MOMENTUM = 0.6


def orthogonalize(matrix: tf.Tensor, dtype: tf.DType = tf.float32,
                  steps: int = _NEWTON_SCHULZ_STEPS) -> tf.Tensor:
  """About U V^T for the matrix's singular value decomposition U S V^T, by `steps` Newton-Schulz
  iterations computed in `dtype`, each on the smaller of the two Gram matrices. Returns the input's
  dtype and shape."""
  a, b, c = _NEWTON_SCHULZ
  x = tf.cast(matrix / (tf.norm(matrix) + 1e-7), dtype)  # every singular value <= 1
  tall = matrix.shape[0] > matrix.shape[1]
  for _ in range(steps):
    gram = tf.matmul(x, x, transpose_a=tall, transpose_b=not tall)
    polynomial = b * gram + c * tf.matmul(gram, gram)
    x = a * x + (tf.matmul(x, polynomial) if tall else tf.matmul(polynomial, x))
  return tf.cast(x, matrix.dtype)


def _orthogonalization_dtype() -> tf.DType:
  """bfloat16 under mixed_bfloat16 (as Muon runs on GPUs; native on the CPUs that `auto` gives it),
  else float32: CPUs without native bfloat16 multiply it far slower than float32."""
  bfloat16 = keras.mixed_precision.global_policy().compute_dtype == 'bfloat16'
  return tf.bfloat16 if bfloat16 else tf.float32


@keras.saving.register_keras_serializable(package='cifar100')
class Muon(keras.optimizers.SGD):
  """Muon for convolution kernels, SGD (`momentum`, `nesterov`) for every other variable.

  A kernel's step is its Nesterov momentum (momentum 0.6, of the raw gradients) reshaped to a
  [kernel height x width x input channels, output channels] matrix and orthogonalized
  (`orthogonalize`), times `MUON_KERNEL_RATE_FACTOR` x the learning rate; the kernel is then
  scaled back to the norm it had before the step, so only its direction learns (the BatchNorm
  after it makes the scale irrelevant; without one, the scale stays where it was initialized or
  pretrained). Weight decay, which would only shrink that norm, is left to the other variables.
  Depthwise kernels (one output channel per input) take SGD steps: they have no matrix to
  orthogonalize.
  """

  def __init__(self, learning_rate=0.1, momentum=0.9, nesterov=True, name='muon', **kwargs):
    super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                     name=name, **kwargs)

  @staticmethod
  def orthogonalized(variable) -> bool:
    return len(variable.shape) == 4 and variable.shape[-1] > 1

  def _use_weight_decay(self, variable):
    return not self.orthogonalized(variable) and super()._use_weight_decay(variable)

  def update_step(self, gradient, variable, learning_rate):
    if not self.orthogonalized(variable):
      return super().update_step(gradient, variable, learning_rate)
    buffer = self.momentums[self._get_variable_index(variable)]
    gradient = tf.cast(gradient, variable.dtype)
    momentum = _MUON_MOMENTUM * buffer + gradient
    self.assign(buffer, momentum)
    step = gradient + _MUON_MOMENTUM * momentum  # Nesterov
    matrix = tf.reshape(step, [-1, variable.shape[-1]])
    step = tf.reshape(orthogonalize(matrix, _orthogonalization_dtype()), variable.shape)
    kernel = tf.convert_to_tensor(variable)
    rate = tf.cast(learning_rate, variable.dtype) * MUON_KERNEL_RATE_FACTOR
    moved = kernel - rate * step
    self.assign(variable, moved * (tf.norm(kernel) / (tf.norm(moved) + 1e-12)))


@keras.saving.register_keras_serializable(package='cifar100')
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup from 0 to `peak`, the peak held until `decay_start`, then a cosine down to 0 at
  `total_steps` (and 0 after it).

  The total is a variable, not a constant of the compiled training step: a time budget
  (`TimeBudget`) sets it once it has measured the step time, before the decay starts, and the
  next step reads the new value. Without a budget it is set once, at construction.
  """

  def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay_start: int = 0,
               name: str = 'warmup_cosine'):
    super().__init__()
    self.peak = float(peak)
    self.warmup_steps = int(warmup_steps)
    self.decay_start = max(int(decay_start), self.warmup_steps)
    self.name = name
    self._total_steps = keras.Variable(float(total_steps), dtype='float32', trainable=False,
                                       name=f'{name}_total_steps')

  @property
  def total_steps(self) -> int:
    return int(round(float(keras.ops.convert_to_numpy(self._total_steps))))

  def set_total_steps(self, total_steps: int) -> None:
    """Sets where the decay ends; only before it started (`decay_start`), so the rate the
    optimizer already used stays the one of the new schedule."""
    if total_steps < self.decay_start:
      raise ValueError(f'total_steps ({total_steps}) must be at least the decay start '
                       f'({self.decay_start}).')
    self._total_steps.assign(float(total_steps))

  def __call__(self, step):
    step = keras.ops.cast(step, 'float32')
    total = keras.ops.convert_to_tensor(self._total_steps)
    decay_steps = keras.ops.maximum(total - self.decay_start, 1.0)
    progress = keras.ops.clip((step - self.decay_start) / decay_steps, 0.0, 1.0)
    cosine = self.peak * 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
    if self.warmup_steps == 0:
      return cosine
    warmup = self.peak * step / self.warmup_steps
    return keras.ops.where(step < self.warmup_steps, warmup, cosine)

  def get_config(self) -> Dict[str, Any]:
    return {'peak': self.peak, 'warmup_steps': self.warmup_steps,
            'total_steps': self.total_steps, 'decay_start': self.decay_start, 'name': self.name}


def make_schedule(name: str,
                  learning_rate: float,
                  total_steps: int,
                  warmup_steps: int = 0,
                  decay_start: int = 0) -> LearningRate:
  """Builds the learning rate (a float or a schedule of the optimizer step) for a schedule name.

  Args:
    name: one of `SCHEDULES`. 'constant' and 'plateau' give the float `learning_rate` ('plateau'
      lowers it from a callback, see `make_callbacks`); 'cosine' rises linearly from 0 to
      `learning_rate` over `warmup_steps`, then decays along a cosine to 0 at `total_steps`
      (a `WarmupCosine`, whose total a `TimeBudget` may change before the decay starts).
    learning_rate: the peak learning rate.
    total_steps: number of optimizer steps of the whole training, warmup included.
    warmup_steps: linear warmup steps (cosine only).
    decay_start: cosine only: the rate stays at its peak after the warmup until this step (a time
      budget measures the step time meanwhile); 0: the decay starts when the warmup ends.

  Returns:
    A float or a `keras.optimizers.schedules.LearningRateSchedule`.
  """
  _check_choice('learning-rate schedule', name, SCHEDULES)
  if warmup_steps < 0:
    raise ValueError(f'warmup_steps must be >= 0, got {warmup_steps}.')
  if name != 'cosine':
    if warmup_steps > 0:
      raise ValueError(f'Warmup is only supported with the cosine schedule, not {name!r}.')
    return float(learning_rate)
  if total_steps <= warmup_steps:
    raise ValueError(
        f'total_steps ({total_steps}) must be greater than warmup_steps ({warmup_steps}).')
  return WarmupCosine(learning_rate, warmup_steps, total_steps,
                      decay_start=min(decay_start, total_steps))


def make_callbacks(schedule_name: str,
                   early_stopping_patience: int,
                   plateau_factor: float = _PLATEAU_FACTOR,
                   plateau_patience: int = _PLATEAU_PATIENCE,
                   min_learning_rate: float = _PLATEAU_MIN_LR) -> List[keras.callbacks.Callback]:
  """Returns the callbacks that the schedule and early stopping need, both watching val accuracy.

  Args:
    schedule_name: one of `SCHEDULES`; 'plateau' adds `ReduceLROnPlateau`.
    early_stopping_patience: epochs without a new best validation accuracy before stopping and
      restoring the best weights; 0 disables early stopping.
    plateau_factor: factor the learning rate is multiplied by on a plateau.
    plateau_patience: epochs without improvement that make a plateau.
    min_learning_rate: lower bound of the reduced learning rate.

  Returns:
    A list of `keras.callbacks.Callback`, possibly empty.
  """
  _check_choice('learning-rate schedule', schedule_name, SCHEDULES)
  if early_stopping_patience < 0:
    raise ValueError(f'early_stopping_patience must be >= 0, got {early_stopping_patience}.')
  callbacks = []
  if schedule_name == 'plateau':
    callbacks.append(
        keras.callbacks.ReduceLROnPlateau(monitor=constants.VAL_ACCURACY,
                                          mode='max',
                                          factor=plateau_factor,
                                          patience=plateau_patience,
                                          min_lr=min_learning_rate))
  if early_stopping_patience > 0:
    callbacks.append(
        keras.callbacks.EarlyStopping(monitor=constants.VAL_ACCURACY,
                                      mode='max',
                                      patience=early_stopping_patience,
                                      restore_best_weights=True))
  return callbacks


# --- time budget ---


def epochs_within_budget(budget_sec: float, elapsed_sec: float, epoch_sec: float,
                         epochs_done: int, max_epochs: int) -> int:
  """The epochs a training phase runs so that it ends within a time budget.

  The epochs done, plus as many more whole epochs of `epoch_sec` as the time left holds
  (`budget_sec - elapsed_sec`), at most `max_epochs`; never fewer than those done (a phase that
  measured over-budget stops after them).

  Args:
    budget_sec: seconds the whole training may take.
    elapsed_sec: seconds spent so far (earlier phases, tracing, the epochs done).
    epoch_sec: steady-state seconds of one more epoch, validation included.
    epochs_done: epochs of this phase already run.
    max_epochs: the most this phase may run.
  """
  if epoch_sec <= 0:
    raise ValueError(f'epoch_sec must be > 0, got {epoch_sec}.')
  more = math.floor(max(budget_sec - elapsed_sec, 0.0) / epoch_sec)
  return int(min(max_epochs, epochs_done + more))


def smallest_across_replicas(strategy: tf.distribute.Strategy, value_fn) -> int:
  """The smallest of `value_fn()` (an integer tensor, run in each replica) over all replicas of
  the strategy, the same answer on every worker of a multi-worker training; `value_fn()` itself
  with one replica. (tf.distribute's reductions have no MIN: the values are gathered.)"""
  if strategy.num_replicas_in_sync == 1:
    return int(value_fn())
  per_replica = strategy.run(lambda: tf.reshape(tf.cast(value_fn(), tf.int64), [1]))
  return int(tf.reduce_min(strategy.gather(per_replica, axis=0)))


class TimeBudget(keras.callbacks.Callback):
  """Chooses the epochs of the last training phase so that the whole training fits a budget.

  `start` at the beginning of training (head epochs of a transfer model count against the
  budget); `begin_phase` before the fit it controls, whose `epochs` are the most it may choose.
  At the end of that phase's first epoch it reads from `timer` (a `training_stats.TrainingTimer`
  placed before it in the callbacks) the steady-state step time of that epoch and the time of
  its validation, adds the time the callbacks between the two took at the epoch's end (the
  Trainer's per-epoch backup and TensorBoard logs), fixes the epoch count, sets the cosine
  schedule's length to end at the last of those epochs (the first epoch is the measuring window:
  `make_schedule`'s `decay_start` holds the decay until then), and later stops the fit after
  that epoch.
  """

  def __init__(self, minutes: float, timer, clock=time.perf_counter):
    super().__init__()
    self.budget_sec = 60.0 * minutes
    self._timer = timer
    self._clock = clock
    self._start = None
    self._schedule = None
    self._steps_per_epoch = 0
    self._max_epochs = 0
    self._first_epoch = 0
    self.decision: Dict[str, Any] = {}

  def start(self) -> None:
    self._start = self._clock()

  def elapsed(self) -> float:
    return self._clock() - self._start

  def begin_phase(self, schedule: LearningRate, steps_per_epoch: int, max_epochs: int,
                  first_epoch: int) -> None:
    """The phase the budget controls: its schedule, its steps per epoch, the most epochs it
    may run and the index of its first epoch (`initial_epoch` of its fit)."""
    self._schedule = schedule
    self._steps_per_epoch = steps_per_epoch
    self._max_epochs = max_epochs
    self._first_epoch = first_epoch

  def _decide(self, epochs_done: int) -> None:
    ms_per_step, measured_on = self._timer.last_epoch_ms_per_step()
    validation_sec = self._timer.last_validation_sec()
    # The callbacks between the timer and this one at the epoch's end (the Trainer's per-epoch
    # backup and TensorBoard logs) take their time every epoch too.
    end_sec = self._clock() - self._timer.last_epoch_end
    epoch_sec = self._steps_per_epoch * ms_per_step / 1000 + validation_sec + end_sec
    elapsed = self.elapsed()
    epochs = epochs_within_budget(self.budget_sec, elapsed, epoch_sec, epochs_done,
                                  self._max_epochs)
    # Each worker of a multi-worker training measures its own steps; they must all stop after
    # the same epoch, or the others would wait in a collective op forever.
    strategy = getattr(self.model, 'distribute_strategy', None) or tf.distribute.get_strategy()
    epochs = smallest_across_replicas(strategy, lambda: tf.constant(epochs))
    if isinstance(self._schedule, WarmupCosine):
      self._schedule.set_total_steps(max(epochs * self._steps_per_epoch,
                                         self._schedule.decay_start))
    self.decision = {
        'budget_sec': self.budget_sec,
        'ms_per_step': ms_per_step,
        'measured_on': measured_on,
        'validation_sec_per_epoch': validation_sec,
        'epoch_end_sec': end_sec,
        'epoch_sec': epoch_sec,
        'decided_after_sec': elapsed,
        'epochs_chosen': epochs,
        'max_epochs': self._max_epochs,
        'steps_per_epoch': self._steps_per_epoch,
    }
    logging.info('Time budget %.0f s: %.1f ms/step, %.1f s validation, %.1f s saving, %.1f '
                 's/epoch after %.0f s: %d of at most %d epochs', self.budget_sec, ms_per_step,
                 validation_sec, end_sec, epoch_sec, elapsed, epochs, self._max_epochs)

  def resume(self, decision: Dict[str, Any]) -> None:
    """Takes the decision of a run that was stopped after making it (call after
    `begin_phase`): a resumed training keeps the epochs and the schedule length it chose."""
    self.decision = dict(decision)
    if isinstance(self._schedule, WarmupCosine):
      self._schedule.set_total_steps(max(decision['epochs_chosen'] * self._steps_per_epoch,
                                         self._schedule.decay_start))

  def on_epoch_end(self, epoch, logs=None):
    done = epoch + 1 - self._first_epoch
    if not self.decision:  # the first epoch of this fit (a resumed one may start later)
      self._decide(done)
    if self.decision and done >= self.decision['epochs_chosen']:
      self.model.stop_training = True

  def record(self) -> Dict[str, Any]:
    """What the budget measured and chose, and the training's time (first phase's start to now,
    between-phase compilation included), for `training_stats.json`."""
    return {**self.decision, 'budget_minutes': self.budget_sec / 60,
            'training_sec': self.elapsed()}


# --- loss and metrics ---


@keras.saving.register_keras_serializable(package='cifar100')
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
  """Cross-entropy of logits against integer labels, with label smoothing.

  Keras 3's `SparseCategoricalCrossentropy` has no `label_smoothing`, so this one-hots the labels
  and uses the categorical cross-entropy: the target is `(1 - s) * one_hot + s / num_classes`.
  """

  def __init__(self,
               label_smoothing: float = 0.0,
               reduction: str = 'sum_over_batch_size',
               name: str = 'smoothed_sparse_categorical_crossentropy',
               dtype: Optional[str] = None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    self.label_smoothing = label_smoothing

  def call(self, y_true, y_pred):
    num_classes = y_pred.shape[-1]
    # [B, 1] -> [B]; the base class has cast the labels to float.
    labels = keras.ops.cast(keras.ops.reshape(y_true, keras.ops.shape(y_pred)[:-1]), 'int32')
    one_hot = keras.ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
    return keras.losses.categorical_crossentropy(one_hot,
                                                 y_pred,
                                                 from_logits=True,
                                                 label_smoothing=self.label_smoothing)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config['label_smoothing'] = self.label_smoothing
    return config


def make_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
  """Returns the loss for logits and integer labels ([B] or [B, 1]), with optional smoothing."""
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f'label_smoothing must be in [0, 1), got {label_smoothing}.')
  if label_smoothing == 0:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  return SmoothedSparseCategoricalCrossentropy(label_smoothing=label_smoothing)


def make_metrics() -> List[keras.metrics.Metric]:
  """Returns the metrics to compile with: accuracy of logits against integer labels.

  Named 'accuracy' so that logs carry `accuracy`/`val_accuracy`, which the callbacks watch.
  """
  return [keras.metrics.SparseCategoricalAccuracy(name=constants.ACCURACY)]


# --- precision and argument checks ---


def resolve_precision(precision: str,
                      gpu_compute_capability: Optional[Tuple[int, int]] = None,
                      cpu_flags: Sequence[str] = ()) -> str:
  """The Keras dtype policy for a --precision value, resolving 'auto' for the device.

  'auto' picks mixed precision where the hardware runs it natively, float32 elsewhere:
  'mixed_float16' on a GPU with tensor cores (compute capability 7.0 or more), else float32 on a
  GPU; 'mixed_bfloat16' on a CPU with native bfloat16 instructions (1.4-1.6x faster steps on this
  project's AMD EPYC, docs/benchmarks.md), else float32. Other values pass through.

  Args:
    precision: one of `PRECISIONS`.
    gpu_compute_capability: (major, minor) of the first GPU; None: no GPU.
    cpu_flags: the CPU's feature flags, as in /proc/cpuinfo.
  """
  _check_choice('precision', precision, PRECISIONS)
  if precision != 'auto':
    return precision
  if gpu_compute_capability is not None:
    fast = tuple(gpu_compute_capability) >= _MIN_FLOAT16_COMPUTE_CAPABILITY
    return 'mixed_float16' if fast else 'float32'
  return 'mixed_bfloat16' if machine.has_native_bf16(cpu_flags) else 'float32'


def _gpu_compute_capability() -> Optional[Tuple[int, int]]:
  gpus = tf.config.list_physical_devices('GPU')
  if not gpus:
    return None
  return tf.config.experimental.get_device_details(gpus[0]).get('compute_capability', (0, 0))


def set_precision(precision: str) -> str:
  """Sets Keras' global dtype policy for a --precision value and returns the policy's name.

  'auto' is resolved for this machine (`resolve_precision`). Under a mixed policy the model's
  last layer should compute in float32 (`dtype='float32'`) so that logits and loss stay in full
  precision.
  """
  policy = resolve_precision(precision, _gpu_compute_capability(), machine.cpu_flags())
  keras.mixed_precision.set_global_policy(policy)
  return policy


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[str]:
  """`set_precision` for a block, then the previous global policy again (the LocalDagRunner
  runs every component in one process: a Trainer must not leave its policy to the next one)."""
  previous = keras.mixed_precision.global_policy()
  try:
    yield set_precision(precision)
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _check_range(name: str, value, low, high, low_inclusive=True, high_inclusive=True) -> None:
  if value is None:
    return
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f'{name} must be a number, got {value!r}.')
  above = value >= low if low_inclusive else value > low
  below = value <= high if high_inclusive else value < high
  if not (above and below):
    interval = (('[' if low_inclusive else '(') + f'{low}, {high}' +
                (']' if high_inclusive else ')'))
    raise ValueError(f'{name} must be in {interval}, got {value}.')


def _check_int(name: str, value) -> None:
  if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
    raise ValueError(f'{name} must be an integer, got {value!r}.')


def validate_training_args(*,
                           batch_size: Optional[int] = None,
                           learning_rate: Optional[float] = None,
                           weight_decay: Optional[float] = None,
                           label_smoothing: Optional[float] = None,
                           epochs: Optional[int] = None,
                           warmup_epochs: Optional[float] = None,
                           early_stopping_patience: Optional[int] = None,
                           optimizer: Optional[str] = None,
                           schedule: Optional[str] = None,
                           augmentation: Optional[str] = None,
                           precision: Optional[str] = None) -> None:
  """Raises ValueError with a clear message for any out-of-range training argument.

  Arguments left as None are not checked, so callers can validate what they have.
  """
  _check_int('batch_size', batch_size)
  _check_range('batch_size', batch_size, 1, 8192)
  _check_range('learning_rate', learning_rate, 0, 10, low_inclusive=False)
  _check_range('weight_decay', weight_decay, 0, 1)
  _check_range('label_smoothing', label_smoothing, 0, 1, high_inclusive=False)
  _check_int('epochs', epochs)
  _check_range('epochs', epochs, 1, math.inf)
  _check_range('warmup_epochs', warmup_epochs, 0, math.inf)
  _check_int('early_stopping_patience', early_stopping_patience)
  _check_range('early_stopping_patience', early_stopping_patience, 0, math.inf)
  for kind, value, choices in (('optimizer', optimizer, OPTIMIZERS),
                               ('learning-rate schedule', schedule, SCHEDULES),
                               ('precision', precision, PRECISIONS)):
    if value is not None:
      _check_choice(kind, value, choices)
  if augmentation is not None:
    augmentation_lib.check_level(augmentation)
  # Warmup belongs to the cosine schedule (other schedules ignore it) and is capped below the
  # run's length by the caller, so short runs keep the default.
