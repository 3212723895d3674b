"""Tests of modules/training_stats.py: the step timer, the stats dict and its printed summary."""
import json
import os
import resource

import keras
import numpy as np
import pytest
import tensorflow as tf

from base import machine
from modules import training, training_stats

NUM_CLASSES = 3
FEATURES = 4


def _fit_with_timer(epochs, steps, batch_size=8):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, FEATURES)).astype('float32')
  y = rng.integers(0, NUM_CLASSES, (64, 1))
  train = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).repeat()
  val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
  inputs = keras.Input(shape=(FEATURES,))
  model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(inputs))
  model.compile(optimizer=training.make_optimizer('adam', 1e-3),
                loss=training.make_loss(0.1),
                metrics=training.make_metrics())
  timer = training_stats.TrainingTimer(batch_size)
  history = model.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps,
                      callbacks=[timer], verbose=0)
  return timer, model, history.history


def test_training_timer_on_a_real_fit():
  memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  timer, model, history = _fit_with_timer(epochs=2, steps=5)
  stats = training_stats.collect(timer, model, {'model_name': 'tiny'})
  memory_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  assert len(stats['epoch_time_sec']) == 2 and all(t > 0 for t in stats['epoch_time_sec'])
  # Validation is in the epoch time, not in the training time.
  assert all(0 < train < epoch for train, epoch in zip(stats['epoch_train_time_sec'],
                                                      stats['epoch_time_sec']))
  assert stats['steps_per_epoch'] == [5, 5]
  # The steady state is the second epoch: its training time over its 5 steps.
  assert stats['ms_per_step'] == pytest.approx(1000 * stats['epoch_train_time_sec'][1] / 5)
  assert stats['examples_per_sec'] == pytest.approx(8 * 1000 / stats['ms_per_step'])
  assert stats['steady_state_steps'] == '5 steps of 1 epoch(s) after the first'
  assert stats['total_training_time_sec'] >= sum(stats['epoch_time_sec'])
  assert stats['total_params'] == stats['trainable_params'] == FEATURES * NUM_CLASSES + NUM_CLASSES
  # The per-epoch logs are Keras' own History.
  for ours, keras_key in (('train_loss', 'loss'), ('train_accuracy', 'accuracy'),
                          ('val_loss', 'val_loss'), ('val_accuracy', 'val_accuracy')):
    assert stats[ours] == pytest.approx(history[keras_key]), ours
  assert stats['best_val_accuracy'] == pytest.approx(max(history['val_accuracy']))
  assert stats['best_epoch'] == int(np.argmax(history['val_accuracy'])) + 1
  assert stats['learning_rate'] == pytest.approx([1e-3, 1e-3])
  assert memory_before <= stats['peak_host_memory_mib'] <= memory_after
  gpus = tf.config.list_physical_devices('GPU')
  assert stats['device_type'] == ('GPU' if gpus else 'CPU')
  assert stats['gpu_count'] == len(gpus)
  assert stats['cpu_model'] == machine.cpu_model() and stats['cpu_cores'] == os.cpu_count()
  with open('/proc/cpuinfo') as f:  # read here, not through base/machine.py
    flags = next((l for l in f if l.startswith('flags')), ':').split(':', 1)[1].split()
  assert stats['cpu_simd_flags'] == sorted(f for f in flags if f.startswith(('avx', 'fma', 'amx')))
  # Both validations were timed, each within its epoch's time after the training steps.
  assert len(timer.validation_times) == 2
  assert all(0 < v <= epoch - train for v, epoch, train in zip(
      timer.validation_times, stats['epoch_time_sec'], stats['epoch_train_time_sec']))
  assert 'time_budget' not in stats
  if not gpus:
    assert stats['device_name'] == machine.cpu_model()
  assert stats['precision'] == keras.mixed_precision.global_policy().name
  assert stats['model_name'] == 'tiny'
  assert json.loads(json.dumps(stats)) == stats
  summary = training_stats.format_summary(stats)
  assert f'{stats["ms_per_step"]:.1f} ms/step' in summary
  assert f'{stats["examples_per_sec"]:,.0f} examples/s' in summary
  assert f'Best val accuracy: {stats["best_val_accuracy"]:.4f}' in summary


def test_training_timer_single_epoch_uses_later_steps():
  timer, model, _ = _fit_with_timer(epochs=1, steps=10)
  stats = training_stats.collect(timer, model)
  assert stats['ms_per_step'] > 0
  assert stats['examples_per_sec'] == pytest.approx(8 * 1000 / stats['ms_per_step'])
  assert stats['steady_state_steps'] == 'epoch 1, steps 6-10 of 10'


def test_extra_stats_cannot_overwrite_measurements():
  timer, model, _ = _fit_with_timer(epochs=1, steps=2)
  with pytest.raises(ValueError, match='ms_per_step'):
    training_stats.collect(timer, model, {'ms_per_step': 1.0})


def test_summary_lines_by_hand():
  stats = {'epochs': 3, 'total_training_time_sec': 90.0, 'ms_per_step': 12.345,
           'examples_per_sec': 10368.9, 'batch_size': 128, 'steady_state_steps': '20 steps',
           'total_params': 1234567, 'trainable_params': 1000, 'best_val_accuracy': 0.51234,
           'best_epoch': 2, 'device_type': 'CPU', 'device_name': 'AMD EPYC', 'cpu_cores': 2,
           'precision': 'float32', 'peak_host_memory_mib': 2048.4}
  assert training_stats.format_summary(stats).splitlines() == [
      'Training: 3 epochs in 1.5 min (90.0 s); 12.3 ms/step, 10,369 examples/s at batch 128 '
      '(steady state: 20 steps)',
      'Parameters: 1,234,567 total, 1,000 trainable',
      'Best val accuracy: 0.5123 (epoch 2)',
      'Device: CPU AMD EPYC (2 CPU cores); precision float32; peak host memory 2,048 MiB',
  ]
  budget = {'budget_minutes': 20.0, 'epoch_sec': 25.04, 'ms_per_step': 150.2,
            'validation_sec_per_epoch': 5.0, 'epoch_end_sec': 0.8, 'decided_after_sec': 41.6,
            'epochs_chosen': 44, 'max_epochs': 45, 'training_sec': 1150.0}
  assert training_stats.format_summary({**stats, 'time_budget': budget}).splitlines()[1] == (
      'Time budget: 20 min; 25.0 s/epoch (150.2 ms/step, 5.0 s validation, 0.8 s saving the '
      'epoch) measured after 42 s: '
      '44 of at most 45 epochs; trained in 19.2 min')
  missing = training_stats.format_summary({'epochs': 1})
  assert 'n/a ms/step' in missing and 'Best val accuracy: n/a (epoch n/a)' in missing


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
  timer = training_stats.TrainingTimer(batch_size=100, clock=clock)
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


def test_validation_time_scales_the_batches_after_the_first():
  clock = _FakeClock()
  timer = training_stats.TrainingTimer(batch_size=100, clock=clock)
  assert timer.last_validation_sec() == 0.0
  timer.on_test_begin()
  for batch, seconds in enumerate((4.0, 0.5, 0.5, 0.5)):  # the first batch traces
    clock.now += seconds
    timer.on_test_batch_end(batch)
  timer.on_test_end()
  assert timer.validation_times == pytest.approx([5.5])
  assert timer.last_validation_sec() == pytest.approx(2.0)  # 1.5 s for 3 batches, scaled to 4
  timer.on_test_begin()  # a single batch: its whole time
  clock.now += 3.0
  timer.on_test_batch_end(0)
  timer.on_test_end()
  assert timer.last_validation_sec() == pytest.approx(3.0)


def test_training_timer_single_epoch_skips_warmup_steps():
  clock = _FakeClock()
  timer = training_stats.TrainingTimer(batch_size=100, clock=clock)
  timer.on_train_begin()
  _simulate_epoch(timer, clock, 0, steps=100, seconds_per_step=0.01, first_step_seconds=5.0)
  ms, rule = timer.steady_state()
  assert ms == pytest.approx(10.0)
  assert rule == 'epoch 1, steps 11-100 of 100'
