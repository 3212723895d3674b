"""Tests of modules/training.py: optimizers, schedules, loss, augmentation, timing, checks."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from base import machine
from modules import training

NUM_CLASSES = 3


def _tiny_model():
  inputs = keras.Input(shape=(4,))
  outputs = keras.layers.Dense(NUM_CLASSES)(keras.layers.Dense(8, activation='relu')(inputs))
  return keras.Model(inputs, outputs)


def _tiny_data(n=32):
  rng = np.random.default_rng(0)
  return rng.normal(size=(n, 4)).astype('float32'), rng.integers(0, NUM_CLASSES, (n, 1))


def _distinct_images(batch=64, size=32, low=-1.0, high=1.0):
  rng = np.random.default_rng(0)
  return rng.uniform(low, high, (batch, size, size, 3)).astype('float32')


# --- optimizers, schedules, callbacks ---


@pytest.mark.parametrize('name', training.OPTIMIZERS)
@pytest.mark.parametrize('weight_decay', [0.0, 1e-2])
def test_each_optimizer_takes_a_step(name, weight_decay):
  model = _tiny_model()
  model.compile(optimizer=training.make_optimizer(name, 0.01, weight_decay=weight_decay),
                loss=training.make_loss(0.1),
                metrics=training.make_metrics())
  x, y = _tiny_data()
  before = [w.copy() for w in model.get_weights()]
  loss = model.train_on_batch(x, y)[0]
  assert np.isfinite(loss)
  assert all(not np.allclose(b, a) for b, a in zip(before, model.get_weights()))
  assert int(model.optimizer.iterations) == 1


def test_weight_decay_spares_biases_by_default():
  dense = keras.layers.Dense(2, kernel_initializer='ones', bias_initializer='ones')
  dense.build((None, 2))
  optimizer = training.make_optimizer('sgd', 0.1, weight_decay=0.5, momentum=0.0)
  zero_grads = [tf.zeros_like(v) for v in dense.trainable_variables]
  optimizer.apply_gradients(zip(zero_grads, dense.trainable_variables))
  np.testing.assert_allclose(dense.kernel.numpy(), 1 - 0.1 * 0.5)  # w -= w * wd * lr
  np.testing.assert_allclose(dense.bias.numpy(), 1.0)


def test_unknown_optimizer_lists_valid_names():
  with pytest.raises(ValueError, match='adamw'):
    training.make_optimizer('lamb', 0.1)


def test_cosine_schedule_warms_up_then_decays_to_zero():
  schedule = training.make_schedule('cosine', 0.1, total_steps=100, warmup_steps=10)
  lr = lambda step: float(schedule(step))
  assert lr(0) == pytest.approx(0.0)
  assert lr(5) == pytest.approx(0.05)
  assert lr(10) == pytest.approx(0.1)
  assert lr(55) == pytest.approx(0.05, abs=1e-6)  # half-way through the decay
  assert lr(100) == pytest.approx(0.0, abs=1e-7)
  assert lr(1000) == pytest.approx(0.0, abs=1e-7)


def test_cosine_schedule_without_warmup_starts_at_peak():
  schedule = training.make_schedule('cosine', 0.1, total_steps=100)
  assert float(schedule(0)) == pytest.approx(0.1)
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


def test_constant_and_plateau_schedules_are_floats():
  assert training.make_schedule('constant', 0.1, 100) == 0.1
  assert training.make_schedule('plateau', 0.1, 100) == 0.1
  with pytest.raises(ValueError, match='cosine'):
    training.make_schedule('constant', 0.1, 100, warmup_steps=5)
  with pytest.raises(ValueError, match='total_steps'):
    training.make_schedule('cosine', 0.1, 10, warmup_steps=10)
  with pytest.raises(ValueError, match='plateau'):
    training.make_schedule('step', 0.1, 100)


def test_callbacks_follow_schedule_and_patience():
  assert training.make_callbacks('cosine', 0) == []
  plateau, stopping = training.make_callbacks('plateau', 5)
  assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
  assert plateau.monitor == 'val_accuracy'
  assert isinstance(stopping, keras.callbacks.EarlyStopping)
  assert stopping.monitor == 'val_accuracy'
  assert stopping.patience == 5 and stopping.restore_best_weights
  (only,) = training.make_callbacks('constant', 3)
  assert isinstance(only, keras.callbacks.EarlyStopping)


# --- loss and metrics ---


def test_label_smoothed_loss_matches_hand_computation():
  logits = np.array([[2.0, 1.0, 0.0], [0.5, -1.0, 3.0]], 'float32')
  labels = np.array([[0], [2]])
  smoothing = 0.1
  targets = np.full((2, 3), smoothing / 3)
  targets[0, 0] += 1 - smoothing
  targets[1, 2] += 1 - smoothing
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  expected = np.mean(-(targets * log_softmax).sum(axis=1))
  loss = training.make_loss(smoothing)
  assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
  assert float(loss(labels[:, 0], logits)) == pytest.approx(expected, rel=1e-5)  # [B] labels


def test_unsmoothed_loss_is_sparse_crossentropy():
  logits = np.array([[2.0, 1.0, 0.0], [0.5, -1.0, 3.0]], 'float32')
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  expected = -(log_softmax[0, 0] + log_softmax[1, 2]) / 2
  assert float(training.make_loss(0.0)(np.array([[0], [2]]), logits)) == pytest.approx(expected)


def test_smoothed_loss_round_trips_through_config():
  loss = training.make_loss(0.2)
  restored = keras.losses.deserialize(keras.losses.serialize(loss))
  assert restored.label_smoothing == 0.2


def test_accuracy_on_column_labels_and_logits():
  (metric,) = training.make_metrics()
  assert metric.name == 'accuracy'
  labels = np.array([[0], [2], [1], [1]])
  logits = np.array([[5.0, -1, 0], [0, 1, 3], [2, 1, -3], [-2, 4, 1]], 'float32')
  metric.update_state(labels, logits)
  assert float(metric.result()) == pytest.approx(0.75)


# --- augmentation ---


def _find_shift(output, image, pad=4):
  """(flipped, dy, dx) such that `output` is a crop of the reflect-padded `image`, else None."""
  padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)], mode='reflect')
  size = image.shape[0]
  for flipped in (False, True):
    source = padded[:, ::-1] if flipped else padded
    for dy in range(2 * pad + 1):
      for dx in range(2 * pad + 1):
        if np.array_equal(source[dy:dy + size, dx:dx + size], output):
          return flipped, dy, dx
  return None


@pytest.mark.parametrize('level', training.AUGMENTATIONS)
def test_augmentation_keeps_shape_dtype_and_labels(level):
  images = tf.constant(_distinct_images(8))
  labels = tf.range(8)
  out, out_labels = training.augment_fn(level, 32)(images, labels)
  assert out.shape == images.shape and out.dtype == images.dtype
  np.testing.assert_array_equal(out_labels, labels)


def test_no_augmentation_is_identity():
  images = tf.constant(_distinct_images(4))
  out, _ = training.augment_fn('none', 32)(images, tf.zeros([4]))
  np.testing.assert_array_equal(out, images)


def test_basic_augmentation_flips_and_shifts_each_image_on_its_own():
  images = _distinct_images(64)
  keras.utils.set_random_seed(3)
  out, _ = training.augment_fn('basic', 32)(tf.constant(images), tf.zeros([64]))
  shifts = [_find_shift(o, i) for o, i in zip(out.numpy(), images)]
  assert all(shift is not None for shift in shifts)  # every output is a crop of its input
  flips = sum(flipped for flipped, _, _ in shifts)
  assert 0 < flips < 64
  assert len({(dy, dx) for _, dy, dx in shifts}) > 10


def test_augmentation_does_not_clip_the_value_range():
  images = _distinct_images(64)
  keras.utils.set_random_seed(0)
  basic, _ = training.augment_fn('basic', 32)(tf.constant(images), tf.zeros([64]))
  assert basic.numpy().min() < -0.99 and basic.numpy().max() > 0.99
  # Halves at -1 and +1: raising the contrast must push values past the input range.
  halves = np.concatenate([-np.ones((64, 32, 16, 3)), np.ones((64, 32, 16, 3))], 2)
  strong, _ = training.augment_fn('strong', 32)(tf.constant(halves, tf.float32), tf.zeros([64]))
  assert strong.numpy().max() > 1.05 and strong.numpy().min() < -1.05


def test_strong_augmentation_differs_per_image():
  same = np.repeat(_distinct_images(1), 16, axis=0)
  out, _ = training.augment_fn('strong', 32)(tf.constant(same), tf.zeros([16]))
  flat = out.numpy().reshape(16, -1)
  assert len({row.tobytes() for row in flat}) == 16


@pytest.mark.parametrize('level', ['basic', 'strong'])
def test_augmentation_is_reproducible_with_a_seed(level):
  images = tf.constant(_distinct_images(16))
  augment = training.augment_fn(level, 32)
  keras.utils.set_random_seed(1)
  first, _ = augment(images, tf.zeros([16]))
  keras.utils.set_random_seed(1)
  second, _ = augment(images, tf.zeros([16]))
  np.testing.assert_array_equal(first, second)


def test_augmented_dataset_is_reproducible_and_varies_by_epoch():
  images = _distinct_images(32)

  def run():
    keras.utils.set_random_seed(1)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(32))).batch(8)
    dataset = training.augment_dataset(dataset, 'strong', 32).repeat(2)
    return np.stack([batch.numpy() for batch, _ in dataset])

  first, second = run(), run()
  np.testing.assert_array_equal(first, second)
  assert not np.array_equal(first[:4], first[4:])  # the second epoch sees new variations


def test_unknown_augmentation_level():
  with pytest.raises(ValueError, match='strong'):
    training.augment_fn('extreme', 32)


# --- training-time accounting ---


def _fit_with_timer(epochs, steps, batch_size=8):
  x, y = _tiny_data(64)
  train = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).repeat()
  val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
  model = _tiny_model()
  model.compile(optimizer=training.make_optimizer('adam', 1e-3),
                loss=training.make_loss(0.1),
                metrics=training.make_metrics())
  timer = training.TrainingTimer(batch_size)
  model.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps, callbacks=[timer],
            verbose=0)
  return timer, model


def test_training_timer_on_a_real_fit():
  timer, model = _fit_with_timer(epochs=2, steps=5)
  stats = training.training_stats(timer, model, {'model_name': 'tiny'})
  assert len(stats['epoch_time_sec']) == 2 and all(t > 0 for t in stats['epoch_time_sec'])
  assert stats['steps_per_epoch'] == [5, 5]
  assert stats['ms_per_step'] > 0 and stats['examples_per_sec'] > 0
  assert stats['total_training_time_sec'] >= sum(stats['epoch_time_sec'])
  assert stats['total_params'] == stats['trainable_params'] == 4 * 8 + 8 + 8 * 3 + 3
  assert len(stats['val_accuracy']) == 2 and stats['best_val_accuracy'] is not None
  assert stats['learning_rate'] == pytest.approx([1e-3, 1e-3])
  for key in ('train_loss', 'train_accuracy', 'val_loss', 'peak_host_memory_mib', 'device_type',
              'device_name', 'cpu_cores', 'model_name'):
    assert stats[key] is not None, key
  assert json.loads(json.dumps(stats)) == stats
  summary = training.format_stats_summary(stats)
  assert 'ms/step' in summary and 'examples/s' in summary and 'Best val accuracy' in summary


def test_training_timer_single_epoch_uses_later_steps():
  timer, model = _fit_with_timer(epochs=1, steps=10)
  stats = training.training_stats(timer, model)
  assert stats['ms_per_step'] > 0
  assert stats['steady_state_steps'] == 'epoch 1, steps 6-10 of 10'


def test_extra_stats_cannot_overwrite_measurements():
  timer, model = _fit_with_timer(epochs=1, steps=2)
  with pytest.raises(ValueError, match='ms_per_step'):
    training.training_stats(timer, model, {'ms_per_step': 1.0})


class _FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _simulate_epoch(timer, clock, epoch, steps, seconds_per_step, first_step_seconds=None):
  timer.on_epoch_begin(epoch)
  for step in range(steps):
    timer.on_train_batch_begin(step)
    clock.now += first_step_seconds if step == 0 and first_step_seconds else seconds_per_step
    timer.on_train_batch_end(step)
  clock.now += 1.0  # validation: counted in the epoch time, not in the step time
  timer.on_epoch_end(epoch, {'loss': 1.0, 'accuracy': 0.5, 'val_accuracy': 0.4 + epoch / 10})


def test_training_timer_excludes_first_epoch_and_validation():
  clock = _FakeClock()
  timer = training.TrainingTimer(batch_size=100, clock=clock)
  timer.on_train_begin()
  _simulate_epoch(timer, clock, 0, steps=10, seconds_per_step=0.02, first_step_seconds=5.0)
  _simulate_epoch(timer, clock, 1, steps=10, seconds_per_step=0.02)
  _simulate_epoch(timer, clock, 2, steps=10, seconds_per_step=0.04)
  timer.on_train_end()
  ms, rule = timer.steady_state()
  assert ms == pytest.approx(30.0)
  assert rule == '20 steps of 2 epoch(s) after the first'
  assert timer.epoch_times == pytest.approx([6.18, 1.2, 1.4])
  assert timer.total_time == pytest.approx(6.18 + 1.2 + 1.4)


def test_training_timer_single_epoch_skips_warmup_steps():
  clock = _FakeClock()
  timer = training.TrainingTimer(batch_size=100, clock=clock)
  timer.on_train_begin()
  _simulate_epoch(timer, clock, 0, steps=100, seconds_per_step=0.01, first_step_seconds=5.0)
  ms, rule = timer.steady_state()
  assert ms == pytest.approx(10.0)
  assert rule == 'epoch 1, steps 11-100 of 100'


# --- precision and argument checks ---


def test_set_precision_round_trip():
  try:
    training.set_precision('mixed_bfloat16')
    assert keras.mixed_precision.global_policy().name == 'mixed_bfloat16'
    training.set_precision('mixed_float16')
    assert keras.mixed_precision.global_policy().compute_dtype == 'float16'
  finally:
    training.set_precision('float32')
  assert keras.mixed_precision.global_policy().name == 'float32'
  with pytest.raises(ValueError, match='mixed_float16'):
    training.set_precision('float16')


@pytest.mark.parametrize('gpu,flags,expected', [
    ((7, 5), [], 'mixed_float16'),  # T4: tensor cores
    ((8, 0), ['avx512_bf16'], 'mixed_float16'),  # the GPU trains, not the CPU
    ((6, 0), [], 'float32'),  # P100: no tensor cores
    (None, ['avx2', 'avx512f', 'avx512_bf16'], 'mixed_bfloat16'),  # AMD Zen 4, this machine
    (None, ['amx_bf16', 'amx_tile'], 'mixed_bfloat16'),  # Intel Sapphire Rapids
    (None, ['avx2', 'avx512f'], 'float32'),  # bfloat16 would be emulated
])
def test_auto_precision_follows_the_device(gpu, flags, expected):
  assert training.resolve_precision('auto', gpu, flags) == expected


def test_explicit_precision_is_kept_whatever_the_device():
  for precision in ('float32', 'mixed_float16', 'mixed_bfloat16'):
    assert training.resolve_precision(precision, None, []) == precision
    assert training.resolve_precision(precision, (8, 0), ['avx512_bf16']) == precision


def test_set_precision_auto_sets_this_machines_policy():
  try:
    policy = training.set_precision('auto')
    assert policy == training.resolve_precision('auto', None, machine.cpu_flags())
    assert keras.mixed_precision.global_policy().name == policy
  finally:
    training.set_precision('float32')


def test_precision_policy_restores_the_previous_policy():
  with training.precision_policy('mixed_bfloat16') as policy:
    assert policy == keras.mixed_precision.global_policy().name == 'mixed_bfloat16'
  assert keras.mixed_precision.global_policy().name == 'float32'
  with pytest.raises(RuntimeError), training.precision_policy('mixed_float16'):
    raise RuntimeError('training failed')
  assert keras.mixed_precision.global_policy().name == 'float32'


def test_valid_training_args_pass():
  training.validate_training_args(batch_size=128, learning_rate=0.1, weight_decay=5e-4,
                                  label_smoothing=0.1, epochs=30, warmup_epochs=2,
                                  early_stopping_patience=5, optimizer='sgd', schedule='cosine',
                                  augmentation='strong', precision='float32')


@pytest.mark.parametrize('kwargs, message', [
    ({'batch_size': 0}, 'batch_size'),
    ({'batch_size': 8193}, 'batch_size'),
    ({'batch_size': 32.0}, 'batch_size must be an integer'),
    ({'learning_rate': 0.0}, 'learning_rate'),
    ({'learning_rate': 11}, 'learning_rate'),
    ({'weight_decay': -0.1}, 'weight_decay'),
    ({'weight_decay': 1.5}, 'weight_decay'),
    ({'label_smoothing': 1.0}, 'label_smoothing'),
    ({'label_smoothing': -0.1}, 'label_smoothing'),
    ({'epochs': 0}, 'epochs'),
    ({'warmup_epochs': -1}, 'warmup_epochs'),
    ({'early_stopping_patience': -1}, 'early_stopping_patience'),
    ({'optimizer': 'lamb'}, 'adamw'),
    ({'schedule': 'step'}, 'cosine'),
    ({'augmentation': 'max'}, 'basic'),
    ({'precision': 'float16'}, 'mixed_bfloat16'),
])
def test_out_of_range_training_args(kwargs, message):
  with pytest.raises(ValueError, match=message):
    training.validate_training_args(**kwargs)
