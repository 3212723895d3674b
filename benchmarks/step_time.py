"""The course's timing table on this device: simple_cnn and vgg16 ms/step at batch 128, 100 classes.

Each (model, precision) runs in a fresh process (timings of several models in one process drift)
on in-memory random data with Adam (or `--optimizers`); steady-state ms/step excludes the first
epoch (tracing). For vgg16 it also reports how close training comes to this device's arithmetic
limit: training FLOPs per step (3x the forward pass, counted from the layers) / step time, against
the best matmul throughput measured here in the same precision.

    python benchmarks/step_time.py [--models simple_cnn vgg16] [--precisions float32 mixed_bfloat16]
                                   [--optimizers adam muon] [--steps N]

Precisions default to what the device supports: float32, mixed_bfloat16 on CPUs with AVX512-BF16
or AMX (and TPUs), mixed_float16 on GPUs. Add --jit to time XLA too.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from base import machine  # pylint: disable=wrong-import-position
from base.course import (COURSE_BATCH_SIZE, COURSE_MS_PER_STEP,  # pylint: disable=wrong-import-position
                         COURSE_NUM_CLASSES)

BATCH, CLASSES = COURSE_BATCH_SIZE, COURSE_NUM_CLASSES  # the course's table's setting


def supported_precisions():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  precisions = ['float32']
  if tf.config.list_physical_devices('GPU'):
    return precisions + ['mixed_float16', 'mixed_bfloat16']
  if machine.has_native_bf16(machine.cpu_flags()):
    precisions.append('mixed_bfloat16')
  return precisions


def forward_flops(model) -> int:
  """Multiply-adds x 2 of the Conv2D and Dense layers (nested models included)."""
  import keras  # pylint: disable=g-import-not-at-top
  total = 0
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.Conv2D):
      _, h, w, c_out = layer.output.shape
      k_h, k_w = layer.kernel_size
      total += 2 * h * w * k_h * k_w * layer.input.shape[-1] * c_out
    elif isinstance(layer, keras.layers.Dense):
      total += 2 * layer.input.shape[-1] * layer.units
  return total


def matmul_peak_gflops(precision: str) -> float:
  import time  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dtype = tf.bfloat16 if precision == 'mixed_bfloat16' else (
      tf.float16 if precision == 'mixed_float16' else tf.float32)
  n = 2048
  a = tf.random.normal([n, n], dtype=tf.float32)
  a = tf.cast(a, dtype)
  matmul = tf.function(lambda x: tf.matmul(x, x))
  matmul(a).numpy()
  best = float('inf')
  for _ in range(5):
    started = time.perf_counter()
    matmul(a).numpy()
    best = min(best, time.perf_counter() - started)
  return 2 * n ** 3 / best / 1e9


def child(model_name: str, precision: str, steps: int, jit: bool, optimizer: str) -> None:
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from modules import models, training, training_stats  # pylint: disable=g-import-not-at-top
  training.set_precision(precision)
  keras.utils.set_random_seed(0)
  model = models.build_model(model_name, 32, CLASSES)
  model.compile(optimizer=training.make_optimizer(optimizer, 1e-4), loss=training.make_loss(0.0),
                metrics=training.make_metrics(), jit_compile=jit)
  rng = np.random.default_rng(0)
  images = rng.random((BATCH * 4, 32, 32, 3), dtype=np.float32)
  labels = rng.integers(0, CLASSES, BATCH * 4)
  data = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(BATCH).prefetch(2)
  timer = training_stats.TrainingTimer(BATCH)
  model.fit(data, epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0)
  ms, _ = timer.steady_state()
  flops = 3 * forward_flops(model) * BATCH
  print(json.dumps({'model': model_name, 'precision': precision, 'jit': jit,
                    'optimizer': optimizer, 'ms_per_step': ms,
                    'train_gflops_per_step': flops / 1e9,
                    'achieved_gflops': flops / (ms / 1000) / 1e9,
                    'peak_matmul_gflops': matmul_peak_gflops(precision)}))


def _setting(row) -> str:
  """'mixed_bfloat16', 'float32 xla', 'float32 muon': what a timing row varied."""
  return (row['precision'] + (' xla' if row['jit'] else '') +
          ('' if row['optimizer'] == 'adam' else ' ' + row['optimizer']))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', nargs='+', default=['simple_cnn', 'vgg16'])
  parser.add_argument('--precisions', nargs='+', default=None)
  parser.add_argument('--jit', action='store_true', help='also time XLA (slow on CPUs)')
  parser.add_argument('--optimizers', nargs='+', default=['adam'],
                      help="the course's adam (default), or any of --optimizer's, to compare their "
                      'cost per step')
  parser.add_argument('--steps', type=int, default=None,
                      help='steps per epoch (default: 60 for simple_cnn, 12 for the others)')
  args = parser.parse_args()
  precisions = args.precisions or supported_precisions()
  rows = []
  for name in args.models:
    steps = args.steps or (60 if name == 'simple_cnn' else 12)
    for precision in precisions:
      for jit, optimizer in itertools.product([False, True] if args.jit else [False],
                                              args.optimizers):
        out = subprocess.run(
            [sys.executable, __file__, '--child', name, precision, str(steps), str(int(jit)),
             optimizer], capture_output=True, text=True, cwd=ROOT, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f'  {name:10s} {precision:15s} jit={int(jit)} {optimizer:8s} '
              f'{r["ms_per_step"]:8.1f} ms/step, '
              f'{r["achieved_gflops"]:6.0f} GFLOP/s of {r["peak_matmul_gflops"]:5.0f} (matmul '
              'peak)', flush=True)
  from modules.training_stats import device_info  # pylint: disable=g-import-not-at-top
  device = device_info()
  print(f'\nms/step at batch {BATCH}, {CLASSES} classes (this device: {device.get("device_name")}, '
        f'{device.get("cpu_cores")} cores)')
  header = f'{"model":10s} ' + ' '.join(f'{d:>12s}' for d in COURSE_MS_PER_STEP) + ' ' + ' '.join(
      f'{"this " + _setting(r):>24s}' for r in rows
      if r['model'] == args.models[0])
  print(header)
  for name in args.models:
    course = ' '.join(f'{COURSE_MS_PER_STEP[d].get(name, float("nan")):>12.0f}'
                      for d in COURSE_MS_PER_STEP)
    mine = ' '.join(f'{r["ms_per_step"]:>24.1f}' for r in rows if r['model'] == name)
    print(f'{name:10s} {course} {mine}')
  for r in rows:
    if r['model'] == 'vgg16':
      print(f'vgg16 {_setting(r)}: {r["train_gflops_per_step"]:.0f}'
            f' GFLOP per training step; {r["achieved_gflops"]:.0f} GFLOP/s = '
            f'{r["achieved_gflops"] / r["peak_matmul_gflops"]:.0%} of the matmul peak')


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if len(sys.argv) > 1 and sys.argv[1] == '--child':
    child(sys.argv[2], sys.argv[3], int(sys.argv[4]), bool(int(sys.argv[5])), sys.argv[6])
  else:
    main()
