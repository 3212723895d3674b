"""Tests of modules/training.py: optimizers, schedules, loss and metrics, precision, checks."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from modules import training

NUM_CLASSES = 3


def _tiny_model():
  inputs = keras.Input(shape=(4,))
  outputs = keras.layers.Dense(NUM_CLASSES)(keras.layers.Dense(8, activation='relu')(inputs))
  return keras.Model(inputs, outputs)


def _tiny_data(n=32):
  rng = np.random.default_rng(0)
  return rng.normal(size=(n, 4)).astype('float32'), rng.integers(0, NUM_CLASSES, (n, 1))


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
    with open('/proc/cpuinfo') as f:  # read here, not through the code under test
      flags = set(next((l for l in f if l.startswith('flags')), ':').split(':', 1)[1].split())
    # conftest hides GPUs, so 'auto' decides by the CPU alone.
    assert policy == ('mixed_bfloat16' if {'avx512_bf16', 'amx_bf16'} & flags else 'float32')
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
    ({'augmentation': 'max'}, "Unknown augmentation level 'max'; expected one of: none, basic"),
    ({'precision': 'float16'}, 'mixed_bfloat16'),
])
def test_out_of_range_training_args(kwargs, message):
  with pytest.raises(ValueError, match=message):
    training.validate_training_args(**kwargs)
