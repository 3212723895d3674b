"""Training building blocks that the Trainer's `run_fn` composes.

Pure functions and one callback, each testable on its own: optimizers, learning-rate schedules
and callbacks, the label-smoothed loss and the accuracy metric, on-the-fly augmentation, mixed
precision, argument validation and the training-time accounting written beside the model.

The model outputs logits; labels are integer class ids shaped [B] or [B, 1].
"""
import contextlib
import math
import os
import resource
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf

from base import constants, machine

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop')
SCHEDULES = ('constant', 'cosine', 'plateau')
AUGMENTATIONS = ('none', 'basic', 'strong')
PRECISIONS = ('auto', 'float32', 'mixed_float16', 'mixed_bfloat16')
# GPUs with tensor cores (compute capability 7.0+: V100, T4, A100, ...) run float16 fast.
_MIN_FLOAT16_COMPUTE_CAPABILITY = (7, 0)

# Metrics that callbacks and the stats watch; `make_metrics` names the accuracy metric after it.
ACCURACY, VAL_ACCURACY = constants.ACCURACY, constants.VAL_ACCURACY

# Parameters that weight decay leaves alone: biases and normalization scales/offsets (Keras
# variable names), as in AdamW practice: decaying them only fights the normalization.
_NO_DECAY_VARIABLE_NAMES = ('bias', 'gamma', 'beta')

# ReduceLROnPlateau: multiply the rate by this factor after this many epochs without a new best.
_PLATEAU_FACTOR = 0.2
_PLATEAU_PATIENCE = 3
_PLATEAU_MIN_LR = 1e-6

# Augmentation strengths.
_CROP_PAD_FRACTION = 1 / 8  # pad-and-crop shift, as a fraction of the side: 4 px at 32x32
_MAX_ROTATION_DEGREES = 15.0
_MAX_ZOOM = 0.10  # scale in [0.9, 1.1]
_CONTRAST_RANGE = (0.8, 1.2)

# Single-epoch steady state: skip at least this many first steps, or this fraction of the epoch.
_WARMUP_SKIP_STEPS = 5
_WARMUP_SKIP_FRACTION = 0.1

LearningRate = Union[float, keras.optimizers.schedules.LearningRateSchedule]
AugmentFn = Callable[..., Tuple[tf.Tensor, tf.Tensor]]


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
    name: one of `OPTIMIZERS`: 'adam', 'adamw', 'sgd' (with momentum, Nesterov) or 'rmsprop'.
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
  else:
    optimizer = keras.optimizers.RMSprop(learning_rate=learning_rate, weight_decay=decay)
  if weight_decay > 0 and not decay_bias_and_norm:
    optimizer.exclude_from_weight_decay(var_names=list(_NO_DECAY_VARIABLE_NAMES))
  return optimizer


def make_schedule(name: str,
                  learning_rate: float,
                  total_steps: int,
                  warmup_steps: int = 0) -> LearningRate:
  """Builds the learning rate (a float or a schedule of the optimizer step) for a schedule name.

  Args:
    name: one of `SCHEDULES`. 'constant' and 'plateau' give the float `learning_rate` ('plateau'
      lowers it from a callback, see `make_callbacks`); 'cosine' rises linearly from 0 to
      `learning_rate` over `warmup_steps`, then decays along a cosine to 0 at `total_steps`.
    learning_rate: the peak learning rate.
    total_steps: number of optimizer steps of the whole training, warmup included.
    warmup_steps: linear warmup steps (cosine only).

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
  if warmup_steps == 0:
    return keras.optimizers.schedules.CosineDecay(initial_learning_rate=float(learning_rate),
                                                  decay_steps=total_steps)
  # CosineDecay warms up from `initial_learning_rate` to `warmup_target` over `warmup_steps`, then
  # decays over `decay_steps` more steps: the decay gets what is left of the total.
  return keras.optimizers.schedules.CosineDecay(initial_learning_rate=0.0,
                                                decay_steps=total_steps - warmup_steps,
                                                warmup_target=float(learning_rate),
                                                warmup_steps=warmup_steps)


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
        keras.callbacks.ReduceLROnPlateau(monitor=VAL_ACCURACY,
                                          mode='max',
                                          factor=plateau_factor,
                                          patience=plateau_patience,
                                          min_lr=min_learning_rate))
  if early_stopping_patience > 0:
    callbacks.append(
        keras.callbacks.EarlyStopping(monitor=VAL_ACCURACY,
                                      mode='max',
                                      patience=early_stopping_patience,
                                      restore_best_weights=True))
  return callbacks


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
  return [keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)]


# --- augmentation ---
# Augmentation runs in tf.data on the train split only, never in Transform: Transform's output
# stays deterministic and cacheable, and each epoch sees new variations of every image. All ops
# are range-agnostic (images arrive already normalized by the model's preprocessing) and draw
# their randomness per image from a stateless seed, so results follow the seed, not thread timing.


def _image_hw(image_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
  if isinstance(image_size, int):
    return image_size, image_size
  height, width = image_size
  return int(height), int(width)


def _reflect_index(index: tf.Tensor, size: int) -> tf.Tensor:
  """Maps indices in [-(size-1), 2(size-1)] into [0, size) by reflection without edge repeat."""
  return (size - 1) - tf.abs((size - 1) - tf.abs(index))


def _flip_and_crop(images: tf.Tensor, seed: tf.Tensor, pad: int) -> tf.Tensor:
  """Per-image random horizontal flip and pad-`pad`-and-crop with reflect padding.

  Equivalent to `tf.pad(mode='REFLECT')`, a random crop back to size and a random flip, done as
  one gather of source pixel indices, which is several times faster than padding the batch.
  """
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  flip_seed, dy_seed, dx_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  flip = tf.random.stateless_uniform([batch, 1], flip_seed) < 0.5
  dy = tf.random.stateless_uniform([batch, 1], dy_seed, -pad, pad + 1, dtype=tf.int32)
  dx = tf.random.stateless_uniform([batch, 1], dx_seed, -pad, pad + 1, dtype=tf.int32)
  rows = _reflect_index(tf.range(height)[None, :] + dy, height)  # [B, H]
  columns = tf.where(flip, tf.range(width - 1, -1, -1)[None, :], tf.range(width)[None, :])
  columns = _reflect_index(columns + dx, width)  # [B, W]
  pixel_index = tf.reshape(rows[:, :, None] * width + columns[:, None, :], [batch, -1])
  pixels = tf.reshape(images, [batch, height * width, -1])
  out = tf.gather(pixels, pixel_index, axis=1, batch_dims=1)
  return tf.reshape(out, tf.shape(images))


def _rotate_and_zoom(images: tf.Tensor, seed: tf.Tensor, max_degrees: float,
                     max_zoom: float) -> tf.Tensor:
  """Per-image random rotation and zoom about the image center, reflecting at the borders."""
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  angle_seed, zoom_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  max_radians = max_degrees * math.pi / 180
  angle = tf.random.stateless_uniform([batch], angle_seed, -max_radians, max_radians)
  zoom = tf.random.stateless_uniform([batch], zoom_seed, 1 - max_zoom, 1 + max_zoom)
  # The transform maps each output pixel to the input point it samples: a rotation by `angle`
  # scaled by 1/zoom about the center (zoom > 1 magnifies).
  cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
  center_x, center_y = (width - 1) / 2, (height - 1) / 2
  zeros = tf.zeros_like(cos)
  transforms = tf.stack([
      cos, -sin, center_x - cos * center_x + sin * center_y,
      sin, cos, center_y - sin * center_x - cos * center_y,
      zeros, zeros
  ], axis=1)  # yapf: disable
  out = keras.ops.image.affine_transform(images,
                                         transforms,
                                         interpolation='bilinear',
                                         fill_mode='reflect',
                                         data_format='channels_last')
  return tf.cast(out, images.dtype)


def _adjust_contrast(images: tf.Tensor, seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
  """Scales each image's deviation from its own mean by a random factor; no clipping."""
  batch = tf.shape(images)[0]
  factor = tf.random.stateless_uniform([batch, 1, 1, 1], seed, low, high, dtype=images.dtype)
  # One mean per image over pixels and channels (as torchvision's contrast uses the grey mean):
  # a reduction along one contiguous axis, twice as fast as per-channel means.
  mean = tf.reshape(tf.reduce_mean(tf.reshape(images, [batch, -1]), axis=1), [batch, 1, 1, 1])
  return images * factor + mean * (1 - factor)


def augment_fn(level: str, image_size: Union[int, Sequence[int]]) -> AugmentFn:
  """Returns a batch augmentation `(images, labels, seed=None) -> (images, labels)`.

  Levels: 'none' (identity); 'basic': per-image random horizontal flip and pad-and-crop with
  reflect padding (4 px at 32x32, 1/8 of the side in general); 'strong': basic plus random
  rotation (+-15 degrees), zoom (+-10%) and contrast (x0.8..1.2 around the image mean).

  The function takes float images [B, H, W, C] in any value range and returns images of the same
  shape and dtype; labels pass through. `seed` is an int [2] tensor for the stateless random ops;
  without one a seed is drawn from TensorFlow's global generator, which follows
  `keras.utils.set_random_seed` when called eagerly or in a sequential `map`. In a parallel
  `map`, use `augment_dataset`, which feeds a seed per batch and stays reproducible.

  Args:
    level: one of `AUGMENTATIONS`.
    image_size: the side of the square images, or (height, width).
  """
  _check_choice('augmentation level', level, AUGMENTATIONS)
  height, width = _image_hw(image_size)
  pad = max(1, round(_CROP_PAD_FRACTION * min(height, width)))

  def augment(images, labels, seed=None):
    if level == 'none':
      return images, labels
    images = tf.ensure_shape(images, [None, height, width, None])
    if seed is None:
      seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    crop_seed, rotate_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    images = _flip_and_crop(images, crop_seed, pad)
    if level == 'strong':
      images = _rotate_and_zoom(images, rotate_seed, _MAX_ROTATION_DEGREES, _MAX_ZOOM)
      images = _adjust_contrast(images, contrast_seed, *_CONTRAST_RANGE)
    return images, labels

  return augment


def augment_dataset(dataset: tf.data.Dataset, level: str,
                    image_size: Union[int, Sequence[int]]) -> tf.data.Dataset:
  """Augments a dataset of (images, labels) batches in a parallel `map` (train split only).

  Each batch gets its own seed from `tf.data.Dataset.random`, which follows the global seed
  (`keras.utils.set_random_seed`) and draws new seeds on every pass over the data, so runs are
  reproducible whatever the thread timing and every epoch still sees new variations.
  """
  augment = augment_fn(level, image_size)
  if level == 'none':
    return dataset
  seeds = tf.data.Dataset.random(rerandomize_each_iteration=True).batch(2)
  dataset = tf.data.Dataset.zip((dataset, seeds))
  return dataset.map(lambda batch, seed: augment(*batch, seed=seed),
                     num_parallel_calls=tf.data.AUTOTUNE)


# --- training-time accounting ---


class TrainingTimer(keras.callbacks.Callback):
  """Records epoch times, logs and step timing of `model.fit` for the training stats.

  Times never depend on the dataset's length (fit may run on an infinitely repeated dataset with
  `steps_per_epoch`). Steady-state time per step is the training time (first step to last step,
  excluding validation) of every epoch except the first of each `fit` call, which includes
  tracing, divided by its steps. When no such epoch exists (a single epoch), it uses the last
  epoch's steps after the first max(5, 10%) of them, always keeping at least one step.
  Successive `fit` calls with the same timer (e.g. fine-tuning phases) accumulate.
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

  def on_epoch_end(self, epoch, logs=None):
    now = self._clock()
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
  }


def _count_params(variables) -> int:
  return int(sum(math.prod(v.shape) for v in variables))


def _history(logs: List[Dict[str, float]], key: str) -> List[Optional[float]]:
  return [epoch_logs.get(key) for epoch_logs in logs]


def training_stats(timer: TrainingTimer,
                   model: keras.Model,
                   extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Collects the training-time accounting into a JSON-serializable dict.

  Args:
    timer: the `TrainingTimer` passed to `model.fit`.
    model: the trained model (for its parameter counts).
    extra: more entries to record (model name, hyperparameters...); must not reuse a key.

  Returns:
    A flat dict: per-epoch times and logs, steady-state ms/step and examples/s, total training
    time, parameter counts, peak host memory and the device.
  """
  ms_per_step, rule = timer.steady_state()
  val_accuracy = [v for v in _history(timer.logs, VAL_ACCURACY) if v is not None]
  best_epoch = None
  if val_accuracy:
    best_epoch = max(range(len(timer.logs)), key=lambda i: timer.logs[i].get(VAL_ACCURACY, -1))
  stats = {
      'epochs': len(timer.epoch_times),
      'batch_size': timer.batch_size,
      'steps_per_epoch': list(timer.steps),
      'epoch_time_sec': list(timer.epoch_times),
      'epoch_train_time_sec': list(timer.train_times),
      'train_loss': _history(timer.logs, 'loss'),
      'train_accuracy': _history(timer.logs, ACCURACY),
      'val_loss': _history(timer.logs, 'val_loss'),
      VAL_ACCURACY: _history(timer.logs, VAL_ACCURACY),
      'learning_rate': _history(timer.logs, 'learning_rate'),
      'best_val_accuracy': max(val_accuracy) if val_accuracy else None,
      'best_epoch': best_epoch + 1 if best_epoch is not None else None,
      'ms_per_step': ms_per_step,
      'examples_per_sec': 1000 * timer.batch_size / ms_per_step if ms_per_step else None,
      'steady_state_steps': rule,
      'total_training_time_sec': timer.total_time,
      'trainable_params': _count_params(model.trainable_weights),
      'total_params': _count_params(model.weights),
      # Peak of the whole process (a TFX in-process run includes the components before Trainer).
      'peak_host_memory_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'precision': keras.mixed_precision.global_policy().name,
      'tensorflow_version': tf.__version__,
      'keras_version': keras.__version__,
      **device_info(),
  }
  for key, value in (extra or {}).items():
    if key in stats:
      raise ValueError(f'extra key {key!r} would overwrite a measured statistic.')
    stats[key] = value
  return stats


def format_stats_summary(stats: Dict[str, Any]) -> str:
  """A few human-readable lines summarizing `training_stats` for the end of training."""

  def number(key, fmt):
    value = stats.get(key)
    return 'n/a' if value is None else format(value, fmt)

  total = stats.get('total_training_time_sec') or 0.0
  return '\n'.join([
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
  ])


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
                               ('augmentation level', augmentation, AUGMENTATIONS),
                               ('precision', precision, PRECISIONS)):
    if value is not None:
      _check_choice(kind, value, choices)
  # Warmup belongs to the cosine schedule (other schedules ignore it) and is capped below the
  # run's length by the caller, so short runs keep the default.
