"""Tests of modules/training.py: optimizers, schedules, loss and metrics, precision, checks."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from modules import training, training_stats

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



# Muon's published Newton-Schulz polynomial (Keller Jordan, 2024), applied to a singular value.
def _newton_schulz_polynomial(s):
  return 3.4445 * s - 4.7750 * s ** 3 + 2.0315 * s ** 5


@pytest.mark.parametrize('shape', [(16, 40), (40, 16)])
@pytest.mark.parametrize('dtype, rtol', [(tf.float32, 1e-4), (tf.bfloat16, 0.07)])
def test_orthogonalize_keeps_the_singular_vectors_and_evens_the_singular_values(shape, dtype, rtol):
  rng = np.random.default_rng(0)
  rank = min(shape)
  u = np.linalg.qr(rng.normal(size=(shape[0], rank)))[0]
  vt = np.linalg.qr(rng.normal(size=(shape[1], rank)))[0].T
  s = np.linspace(1, 4, rank)  # singular values 4x apart
  matrix = u @ np.diag(s) @ vt
  out = training.orthogonalize(tf.constant(matrix, tf.float32), dtype).numpy().astype('float64')
  assert out.shape == shape
  # In the input's singular basis the output is diagonal: same singular vectors ...
  core = u.T @ out @ vt.T
  np.testing.assert_allclose(core - np.diag(np.diag(core)), 0, atol=rtol * 0.5)
  # ... and each singular value went through three steps of the polynomial from s / |matrix|
  # (in bfloat16, whose rounding of 0.4% the steps' slopes of up to 3.4 amplify to a few percent),
  # which brings the spread of 4x down to within 0.5-1.5.
  expected = s / np.linalg.norm(matrix)
  for _ in range(3):
    expected = _newton_schulz_polynomial(expected)
  np.testing.assert_allclose(np.diag(core), expected, rtol=rtol)
  assert 0.5 < expected.min() and expected.max() < 1.5


@pytest.mark.parametrize('precision, atol', [('float32', 1e-5), ('mixed_bfloat16', 2e-3)])
def test_muon_moves_a_kernel_by_its_orthogonalized_gradient_at_half_the_rate_keeping_its_norm(
    precision, atol):
  rng = np.random.default_rng(1)
  kernel = keras.Variable(rng.normal(size=(3, 3, 2, 4)).astype('float32'))
  # A gradient whose [outputs, 3 x 3 x inputs] matrix has 4 equal singular values (orthonormal
  # rows times 2): orthogonalizing it gives those rows times the polynomial applied three times
  # to 1 / sqrt(4), whatever the momentum's scale.
  rows = np.linalg.qr(rng.normal(size=(18, 4)))[0].T
  gradient = 2 * rows.reshape(4, 3, 3, 2).transpose(1, 2, 3, 0)
  scale = 0.5
  for _ in range(3):
    scale = _newton_schulz_polynomial(scale)
  step = scale * rows.reshape(4, 3, 3, 2).transpose(1, 2, 3, 0)
  before = kernel.numpy()
  optimizer = training.make_optimizer('muon', 0.1, weight_decay=0.5)
  with training.precision_policy(precision):  # bfloat16 orthogonalizes in bfloat16
    optimizer.apply_gradients([(tf.constant(gradient, tf.float32), kernel)])
  moved = before - 0.5 * 0.1 * step
  expected = moved * np.linalg.norm(before) / np.linalg.norm(moved)
  np.testing.assert_allclose(kernel.numpy(), expected, atol=atol)  # no weight decay either
  np.testing.assert_allclose(np.linalg.norm(kernel.numpy()), np.linalg.norm(before), rtol=1e-5)



def test_muon_steps_a_kernel_by_the_nesterov_momentum_of_its_gradients():
  rng = np.random.default_rng(4)
  before = rng.normal(size=(3, 3, 2, 4))
  kernel = keras.Variable(before.astype('float32'))
  gradients = [rng.normal(size=(3, 3, 2, 4)) for _ in range(2)]
  optimizer = training.make_optimizer('muon', 0.1)
  for gradient in gradients:
    optimizer.apply_gradients([(tf.constant(gradient, tf.float32), kernel)])
  expected = before
  momentum = np.zeros_like(before)
  for gradient in gradients:  # momentum 0.6, Nesterov, on the raw gradients
    momentum = 0.6 * momentum + gradient
    step = training.orthogonalize(tf.constant((gradient + 0.6 * momentum).reshape(18, 4)))
    moved = expected - 0.05 * step.numpy().reshape(expected.shape)
    expected = moved * np.linalg.norm(expected) / np.linalg.norm(moved)
  np.testing.assert_allclose(kernel.numpy(), expected, atol=1e-5)

def test_muon_gives_sgd_steps_to_dense_and_depthwise_kernels_and_biases():
  rng = np.random.default_rng(2)
  shapes = [(4, 3), (3,), (3, 3, 5, 1)]  # a dense kernel, a bias, a depthwise kernel
  values = [rng.normal(size=shape).astype('float32') for shape in shapes]
  gradients = [tf.constant(rng.normal(size=shape), tf.float32) for shape in shapes]
  muon_variables = [keras.Variable(v) for v in values]
  sgd_variables = [keras.Variable(v) for v in values]
  muon = training.make_optimizer('muon', 0.1, weight_decay=0.01)
  sgd = training.make_optimizer('sgd', 0.1, weight_decay=0.01)
  for _ in range(2):  # the second step uses the momentum
    muon.apply_gradients(zip(gradients, muon_variables))
    sgd.apply_gradients(zip(gradients, sgd_variables))
  for a, b, value in zip(muon_variables, sgd_variables, values):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    assert not np.allclose(a.numpy(), value)


def test_muon_trains_a_convolutional_model_that_saves_and_loads_with_its_optimizer(tmp_path):
  inputs = keras.Input(shape=(8, 8, 3))
  x = keras.layers.Conv2D(8, 3, padding='same', use_bias=False)(inputs)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.GlobalAveragePooling2D()(keras.layers.Activation('relu')(x))
  model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x))
  model.compile(optimizer=training.make_optimizer('muon', 0.05, weight_decay=5e-4),
                loss=training.make_loss(0.0))
  rng = np.random.default_rng(3)
  images = rng.normal(size=(64, 8, 8, 3)).astype('float32')
  labels = rng.integers(0, NUM_CLASSES, (64, 1))
  images += labels[:, :, None, None].astype('float32')  # a learnable signal
  history = model.fit(images, labels, epochs=15, batch_size=16, verbose=0).history['loss']
  assert history[-1] < 0.5 * history[0]
  model.save(tmp_path / 'model.keras')
  loaded = keras.models.load_model(tmp_path / 'model.keras')
  assert isinstance(loaded.optimizer, training.Muon)
  np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                             rtol=1e-5, atol=1e-5)

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


# --- time budget: the variable-length schedule, the epoch arithmetic, the callback ---


def _cosine(peak, step, decay_start, total):
  """The cosine formula, written here: peak at decay_start, 0 at total."""
  progress = min(max((step - decay_start) / (total - decay_start), 0.0), 1.0)
  return peak * 0.5 * (1 + math.cos(math.pi * progress))


def test_variable_length_schedule_reaches_its_final_rate_at_the_chosen_step():
  # Built for at most 45 epochs of 10 steps, the decay held until the end of epoch 1.
  schedule = training.make_schedule('cosine', 0.1, total_steps=450, warmup_steps=10,
                                    decay_start=10)
  lr = tf.function(schedule)  # traced once: the new total must reach the compiled step
  assert float(lr(5)) == pytest.approx(0.05)
  assert float(lr(10)) == pytest.approx(0.1)
  assert float(lr(200)) == pytest.approx(_cosine(0.1, 200, 10, 450), abs=1e-6)
  schedule.set_total_steps(120)  # the budget chose 12 epochs after the first
  assert schedule.total_steps == 120
  for step in (10, 11, 37, 65, 100, 119):
    assert float(lr(step)) == pytest.approx(_cosine(0.1, step, 10, 120), abs=1e-6), step
  assert float(lr(120)) == pytest.approx(0.0, abs=1e-8)  # the final rate, at the last step
  assert float(lr(500)) == pytest.approx(0.0, abs=1e-8)
  with pytest.raises(ValueError, match='decay start'):
    schedule.set_total_steps(5)


def test_schedule_holds_its_peak_until_the_decay_starts():
  schedule = training.make_schedule('cosine', 0.2, total_steps=100, warmup_steps=4,
                                    decay_start=20)
  assert [float(schedule(s)) for s in (0, 2, 4, 12, 20)] == pytest.approx(
      [0.0, 0.1, 0.2, 0.2, 0.2])
  assert float(schedule(60)) == pytest.approx(_cosine(0.2, 60, 20, 100), abs=1e-6)


def test_variable_length_schedule_round_trips_through_config():
  schedule = training.make_schedule('cosine', 0.1, total_steps=450, warmup_steps=10,
                                    decay_start=10)
  schedule.set_total_steps(200)
  restored = keras.optimizers.schedules.deserialize(
      keras.optimizers.schedules.serialize(schedule))
  assert restored.total_steps == 200
  for step in (0, 5, 10, 150, 200):
    assert float(restored(step)) == pytest.approx(float(schedule(step)), abs=1e-7)


@pytest.mark.parametrize('budget, elapsed, epoch, done, most, expected', [
    (600, 60, 20, 1, 45, 28),  # 540 s left hold 27 more epochs of 20 s
    (600, 60, 19.9, 1, 45, 28),  # 27.1 epochs: whole epochs only
    (600, 60, 10, 1, 45, 45),  # 54 would fit: the most it may choose
    (600, 590, 20, 1, 45, 1),  # the first epoch took the budget: stop after it
    (600, 700, 20, 1, 45, 1),  # over budget already
    (1200, 300, 45, 2, 45, 22),  # two epochs done, 900 s left: 20 more
])
def test_epochs_within_budget(budget, elapsed, epoch, done, most, expected):
  assert training.epochs_within_budget(budget, elapsed, epoch, done, most) == expected


def test_epochs_within_budget_needs_a_positive_epoch_time():
  with pytest.raises(ValueError, match='epoch_sec'):
    training.epochs_within_budget(600, 0, 0.0, 1, 45)


class _Clock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


class _Model:
  stop_training = False


class _Backup:
  """A callback between the timer and the budget that takes `seconds` at each epoch's end."""

  def __init__(self, clock, seconds):
    self.clock, self.seconds = clock, seconds

  def __getattr__(self, name):  # every other callback method does nothing
    return lambda *args, **kwargs: None

  def on_epoch_end(self, epoch, logs=None):
    self.clock.now += self.seconds


def _epoch(timer, budget, clock, epoch, steps, step_sec, val_batches, val_sec, first_sec=0.0,
           end_sec=0.0):
  """One epoch as fit calls the callbacks: the timer first, a backup taking `end_sec` at the
  epoch's end, then the budget."""
  callbacks = (timer, _Backup(clock, end_sec), budget)
  for c in callbacks:
    c.on_epoch_begin(epoch)
  for step in range(steps):
    for c in callbacks:
      c.on_train_batch_begin(step)
    clock.now += step_sec + (first_sec if step == 0 else 0.0)
    for c in callbacks:
      c.on_train_batch_end(step)
  for c in callbacks:
    c.on_test_begin()
  for batch in range(val_batches):
    clock.now += val_sec + (first_sec if batch == 0 else 0.0)
    for c in callbacks:
      c.on_test_batch_end(batch)
  for c in callbacks:
    c.on_test_end()
  for c in callbacks:
    c.on_epoch_end(epoch, {'loss': 1.0})


def test_time_budget_measures_the_first_epoch_then_stops_at_its_choice():
  clock = _Clock()
  timer = training_stats.TrainingTimer(batch_size=128, clock=clock)
  budget = training.TimeBudget(1.0, timer, clock=clock)  # 60 s
  model = _Model()
  for c in (timer, budget):
    c.set_model(model)
  schedule = training.make_schedule('cosine', 0.1, total_steps=45 * 20, warmup_steps=20,
                                    decay_start=20)
  clock.now = 100.0
  budget.start()
  budget.begin_phase(schedule, steps_per_epoch=20, max_epochs=45, first_epoch=0)
  timer.on_train_begin()
  # Epoch 1: 3 s of tracing in the first step and the first validation batch; then 0.1 s per
  # step, 0.5 s per validation batch (4 batches); saving each epoch takes 1 s.
  _epoch(timer, budget, clock, 0, 20, 0.1, 4, 0.5, first_sec=3.0, end_sec=1.0)
  # Elapsed 2 + 3 + 2 + 3 + 1 = 11 s; an epoch costs 20 * 0.1 + 4 * 0.5 + 1 = 5 s: 9 more fit in
  # the 49 s left.
  decision = budget.decision
  assert decision['ms_per_step'] == pytest.approx(100.0)
  assert decision['validation_sec_per_epoch'] == pytest.approx(2.0)
  assert decision['epoch_end_sec'] == pytest.approx(1.0)
  assert decision['epoch_sec'] == pytest.approx(5.0)
  assert decision['decided_after_sec'] == pytest.approx(11.0)
  assert decision['epochs_chosen'] == 10 and decision['max_epochs'] == 45
  assert schedule.total_steps == 10 * 20
  assert not model.stop_training
  for epoch in range(1, 10):
    _epoch(timer, budget, clock, epoch, 20, 0.1, 4, 0.5, end_sec=1.0)
    assert model.stop_training == (epoch == 9)
  record = budget.record()
  assert record['budget_minutes'] == 1.0 and record['training_sec'] == pytest.approx(56.0)


@pytest.mark.parametrize('minutes, epochs', [(1e-6, 1), (60.0, 4)])
def test_time_budget_stops_a_real_fit(minutes, epochs):
  """A budget already spent stops after the measured epoch; an ample one runs the most."""
  model = _tiny_model()
  schedule = training.make_schedule('cosine', 0.1, total_steps=4 * 3, warmup_steps=3,
                                    decay_start=3)
  model.compile(optimizer=training.make_optimizer('sgd', schedule),
                loss=training.make_loss(), metrics=training.make_metrics())
  x, y = _tiny_data()
  timer = training_stats.TrainingTimer(batch_size=8)
  budget = training.TimeBudget(minutes, timer)
  budget.start()
  budget.begin_phase(schedule, steps_per_epoch=3, max_epochs=4, first_epoch=0)
  train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
  val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
  history = model.fit(train, validation_data=val, epochs=4, steps_per_epoch=3, verbose=0,
                      callbacks=[timer, budget])
  assert len(history.history['loss']) == budget.decision['epochs_chosen'] == epochs
  assert schedule.total_steps == max(epochs, 1) * 3
  assert budget.decision['validation_sec_per_epoch'] > 0 and budget.decision['ms_per_step'] > 0
  if epochs > 1:  # the decay ran to its end: the final rate at the last step
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-8)


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


def _budget_at(clock, model, first_epoch=0):
  timer = training_stats.TrainingTimer(batch_size=128, clock=clock)
  budget = training.TimeBudget(1.0, timer, clock=clock)  # 60 s
  for c in (timer, budget):
    c.set_model(model)
  schedule = training.make_schedule('cosine', 0.1, total_steps=45 * 20, warmup_steps=20,
                                    decay_start=20)
  budget.start()
  budget.begin_phase(schedule, steps_per_epoch=20, max_epochs=45, first_epoch=first_epoch)
  timer.on_train_begin()
  return timer, budget, schedule


def test_a_resumed_budget_keeps_the_stopped_runs_choice():
  clock, model = _Clock(), _Model()
  timer, budget, schedule = _budget_at(clock, model)
  budget.resume({'epochs_chosen': 5, 'ms_per_step': 100.0})
  assert schedule.total_steps == 5 * 20  # the schedule ends where the stopped run's would have
  # Resumed after epoch 3 of 5: epochs 4 and 5 run, then the fit stops; nothing is re-measured.
  for epoch in (3, 4):
    _epoch(timer, budget, clock, epoch, 20, 7.0, 4, 0.5)  # (slower steps: no new choice)
    assert model.stop_training == (epoch == 4)
  assert budget.decision['epochs_chosen'] == 5


def test_a_budget_resumed_before_its_choice_decides_after_its_first_epoch():
  # Stopped after epoch 1, before the choice was saved: the resumed fit starts at epoch 2 of the
  # phase and measures that epoch instead (20 steps of 0.1 s + 4 validation batches of 0.5 s).
  clock, model = _Clock(), _Model()
  timer, budget, _ = _budget_at(clock, model)
  _epoch(timer, budget, clock, 1, 20, 0.1, 4, 0.5)
  assert budget.decision['epoch_sec'] == pytest.approx(4.0)
  # 4 s elapsed, 56 s left: 14 more whole epochs; with the 2 of the phase done, 16.
  assert budget.decision['epochs_chosen'] == 16
