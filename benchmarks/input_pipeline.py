"""Is the Trainer's input pipeline ever the bottleneck? simple_cnn at batch 128, fed two ways.

- `disk`: the Trainer's real input code (`modules.inputs.make_dataset`) reading gzipped
  TFRecords: by default ExampleGen's raw examples (PNG bytes) through Transform's graph, written
  as TFX's in-place Transform writes it, exactly what the Trainer reads;
- `memory`: the same images and labels as numpy arrays in an in-memory tf.data pipeline.

Each feed runs in a fresh process (timings of several models in one process drift), twice,
alternating; steady-state ms/step excludes the first epoch (tracing, cache fill).

    python benchmarks/input_pipeline.py [--examples 20000] [--epochs 3] [--classes 100]
                                        [--format raw|int64|float32]

`--format`: raw PNG examples through the transform graph (the pipeline's way since Transform
stopped materialising), or materialised transformed examples as Transform wrote them before:
int64 pixels, or normalized float32 (the format before that).

Target (docs/benchmarks.md): disk / memory steady-state ms/step <= 1.05.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def feature_spec(image_format: str):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from base import constants  # pylint: disable=g-import-not-at-top
  return {constants.IMAGE_XF_KEY: tf.io.FixedLenFeature([32, 32, 3], tf.as_dtype(image_format)),
          constants.LABEL_XF_KEY: tf.io.FixedLenFeature([], tf.int64)}


def write_raw(path: str, examples: int, classes: int) -> None:
  """ExampleGen's examples (random 32x32 PNGs, labels) and, beside them, the transform graph."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from datasources import encoding  # pylint: disable=g-import-not-at-top
  from tests import fixtures  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (examples, 32, 32, 3), dtype=np.uint8)
  encoding.write_tfrecord_gz(path, [fixtures.raw_example(png, i % classes) for i, png in
                                    enumerate(encoding.encode_pngs(images))])
  fixtures.write_transform_graph(graph_dir(path))


def graph_dir(path: str) -> str:
  return os.path.join(os.path.dirname(path), 'transform_graph')


def write_transformed(path: str, examples: int, classes: int, image_format: str) -> None:
  """Transformed examples as Transform writes them: image_xf [32,32,3] int64 pixels (or
  normalized float32, the format before), label_xf int64."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from base import constants  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for i in range(examples):
      pixels = rng.integers(0, 256, 32 * 32 * 3)
      image = (tf.train.Feature(int64_list=tf.train.Int64List(value=pixels))
               if image_format == 'int64' else
               tf.train.Feature(float_list=tf.train.FloatList(value=pixels / 255)))
      example = tf.train.Example(features=tf.train.Features(feature={
          constants.IMAGE_XF_KEY: image,
          constants.LABEL_XF_KEY: tf.train.Feature(int64_list=tf.train.Int64List(
              value=[i % classes]))}))
      writer.write(example.SerializeToString())


def child(feed: str, path: str, examples: int, epochs: int, classes: int,
          image_format: str) -> None:
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from modules import inputs, models, training, training_stats
  batch = 128
  steps = examples // batch
  spec, raw = feature_spec('int64' if image_format == 'raw' else image_format), None
  if image_format == 'raw':
    import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
    raw = inputs.raw_examples(tft.TFTransformOutput(graph_dir(path)))
  if feed == 'disk':
    data = inputs.make_dataset([path], spec, batch, True, examples, raw=raw)
  else:
    parsed = next(iter(inputs.make_dataset([path], spec, examples, False, examples, raw=raw)))
    images, labels = parsed[0].numpy(), parsed[1].numpy()
    data = (tf.data.Dataset.from_tensor_slices((images, labels)).cache()
            .shuffle(examples).repeat().batch(batch, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))
  keras.utils.set_random_seed(0)
  model = models.build_model('simple_cnn', 32, classes)
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=training.make_loss(0.0),
                metrics=training.make_metrics(), jit_compile=False)
  timer = training_stats.TrainingTimer(batch)
  model.fit(data, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
  ms, rule = timer.steady_state()
  print(json.dumps({'feed': feed, 'ms_per_step': ms, 'rule': rule}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--examples', type=int, default=20000)
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--classes', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--format', default='raw', choices=('raw', 'int64', 'float32'),
                      help='raw examples through the transform graph (the pipeline now), or '
                      'image_xf as Transform materialised it before (int64; float32 before that)')
  args = parser.parse_args()
  workdir = tempfile.mkdtemp(prefix='input_bench_')
  path = os.path.join(workdir, 'examples.gz')
  print(f'Writing {args.examples:,} {args.format} examples to {path} ...', flush=True)
  if args.format == 'raw':
    write_raw(path, args.examples, args.classes)
  else:
    write_transformed(path, args.examples, args.classes, args.format)
  results = {'disk': [], 'memory': []}
  for _ in range(args.repeats):
    for feed in ('memory', 'disk'):
      out = subprocess.run([sys.executable, __file__, '--child', feed, path, str(args.examples),
                            str(args.epochs), str(args.classes), args.format],
                           capture_output=True, text=True, cwd=ROOT, check=True).stdout
      result = json.loads(out.strip().splitlines()[-1])
      results[feed].append(result['ms_per_step'])
      print(f'  {feed:6s} {result["ms_per_step"]:7.1f} ms/step ({result["rule"]})', flush=True)
  disk, memory = min(results['disk']), min(results['memory'])
  print(f'simple_cnn, batch 128, {args.classes} classes, {args.format}: disk {disk:.1f} ms/step, memory '
        f'{memory:.1f} ms/step (best of {args.repeats}); ratio {disk / memory:.3f}')


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if len(sys.argv) > 1 and sys.argv[1] == '--child':
    child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
          sys.argv[7])
  else:
    main()
