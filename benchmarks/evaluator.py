"""Evaluator speed and memory: TFMA on N test images, with and without flip TTA, and its floor.

Builds (once, in --workdir) a generated archive in the CIFAR-100 format whose test split of the
team's classes holds --images images, and runs the pipeline's own components up to the Trainer
(taken from `create_pipeline`: ExampleGen .. Transform, Trainer with `--epochs 1
--steps-per-epoch 1`) once per `--tta`, which gives the test Examples artifact and one exported
model per TTA, as a default run makes them. Then, each in a fresh process:
- `evaluator`: only the Evaluator component, with the real inputs (that Examples artifact, that
  Model) and the exec properties and Beam args `create_pipeline` gives it, run by its own executor
  (TFX's `Evaluator` executor, what LocalDagRunner launches; no baseline, as in a first run);
- `floor`: the same model without Beam or TFMA: the SavedModel load, its `serving_default`
  signature (parse, the Transform graph, the model, TTA) over the same serialized test examples in
  batches of --floor-batch, and the plain Keras forward pass (`model.keras`, TTA included) over the
  decoded pixels: what no evaluation can go below.
It prints, per configuration, the seconds, images/s and seconds per 10,000 images of the measured
part (the executor's `Do`, or each floor step: not the imports), its CPU seconds (user + system of
the process and the children it reaped: the default in-process DirectRunner has none), the peak
resident memory of the process tree (sampled every 50 ms, imports included), the machine's CPU
flags and its 1-minute load average. The load slows the wall time down, not the CPU time.

    python benchmarks/evaluator.py --workdir /tmp/eval_bench [--images 10000] [--tta flip none]

Target (issue 11, docs/benchmarks.md): the Evaluator on 10,000 test images in under a tenth of a
default training run (the 15-minute `--time-budget`): < 90 s on 2 cores.
"""
import argparse
import glob
import json
import os
import sys
import tempfile
import time

import child_process  # benchmarks/ (the script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from base import constants, machine  # pylint: disable=wrong-import-position


def _config(data: str, output_dir: str, num_classes: int, tta: str):
  from base.configs import DataConfig, PipelineConfig, RunnerConfig, TrainingConfig  # pylint: disable=g-import-not-at-top
  return PipelineConfig(
      data=DataConfig(data=data, trust_data=True, num_classes=num_classes),
      training=TrainingConfig(epochs=1, steps_per_epoch=1, time_budget=None, tta=tta),
      runner=RunnerConfig(output_dir=output_dir))


def _evaluator_inputs(config) -> dict:
  """The Evaluator as `create_pipeline` builds it: its exec properties as the launcher passes them
  (protos as JSON, other non-strings JSON-serialized) and its Beam args (the pipeline's, then its
  own `with_beam_pipeline_args`, as TFX merges them)."""
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx.utils import json_utils, proto_utils  # pylint: disable=g-import-not-at-top
  from pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  full = create_pipeline(config, tfx.orchestration.metadata.sqlite_metadata_connection_config(
      config.runner.metadata_path))
  evaluator = next(c for c in full.components if c.id == constants.EVALUATOR)
  return {
      'exec_properties': {
          k: proto_utils.proto_to_json(v) if isinstance(v, message.Message)
          else v if isinstance(v, (str, int, float)) or v is None else json_utils.dumps(v)
          for k, v in evaluator.exec_properties.items()},
      'beam_args': [str(a) for a in evaluator.executor_spec.beam_pipeline_args],
  }


def child_prepare(data: str, output_dir: str, num_classes: int, tta: str) -> None:
  """Runs ExampleGen .. Trainer (cached data components reused); prints the test Examples, the
  model and the Evaluator's exec properties and Beam args."""
  from base import constants  # pylint: disable=g-import-not-at-top
  from tests import e2e  # pylint: disable=g-import-not-at-top
  upstream = (*e2e.DATA_COMPONENTS, constants.TRANSFORM, constants.TRAINER)
  config, sizes = e2e.run_pipeline(_config(data, output_dir, num_classes, tta), only=upstream)
  examples = e2e.latest_artifact(config, 'Examples', constants.EXAMPLE_GEN)
  model_dir, model_run_dir = e2e.model_dirs(config)
  print(json.dumps({'examples_uri': examples.uri,
                    'split_names': examples.properties['split_names'].string_value,
                    'model_uri': model_dir, 'model_run_uri': model_run_dir,
                    'images': sizes[constants.TEST_SPLIT], 'output_dir': output_dir,
                    **_evaluator_inputs(config)}))


def child_evaluate(artifacts: str) -> None:
  """The Evaluator's executor on the prepared Examples and Model; prints its seconds."""
  from tfx.components.evaluator import executor as evaluator_executor  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  prepared = json.loads(artifacts)
  examples = standard_artifacts.Examples()
  examples.uri, examples.split_names = prepared['examples_uri'], prepared['split_names']
  model = standard_artifacts.Model()
  model.uri = prepared['model_uri']
  out = tempfile.mkdtemp(dir=prepared['output_dir'], prefix='evaluator_')
  evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
  evaluation.uri, blessing.uri = os.path.join(out, 'evaluation'), os.path.join(out, 'blessing')
  for artifact in (evaluation, blessing):
    os.makedirs(artifact.uri)
  context = evaluator_executor.Executor.Context(
      beam_pipeline_args=prepared['beam_args'], tmp_dir=os.path.join(out, 'tmp'), unique_id='1')
  cpu, started = child_process.cpu_seconds(), time.time()
  evaluator_executor.Executor(context).Do(
      {'examples': [examples], 'model': [model]},
      {'evaluation': [evaluation], 'blessing': [blessing]}, prepared['exec_properties'])
  print(json.dumps({'seconds': time.time() - started, 'cpu_s': child_process.cpu_seconds() - cpu,
                    'evaluation_uri': evaluation.uri}))


def child_floor(artifacts: str, tta: str, batch: int) -> None:
  """The SavedModel's serving signature and the plain Keras forward pass on the same images."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from base import constants  # pylint: disable=g-import-not-at-top
  from modules import export, trainer  # pylint: disable=g-import-not-at-top
  prepared = json.loads(artifacts)
  files = sorted(glob.glob(os.path.join(prepared['examples_uri'],
                                        f'Split-{constants.TEST_SPLIT}', '*')))
  records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]
  result = {'images': len(records)}
  cpu, started = child_process.cpu_seconds(), time.time()
  serving = tf.saved_model.load(os.path.join(prepared['model_uri'], 'Format-Serving'))
  signature = serving.signatures[constants.SERVING_SIGNATURE]
  result.update(load_s=time.time() - started, load_cpu_s=child_process.cpu_seconds() - cpu)
  cpu, started = child_process.cpu_seconds(), time.time()
  for i in range(0, len(records), batch):
    signature(**{constants.EXAMPLES_INPUT: tf.constant(records[i:i + batch])})
  result.update(serving_s=time.time() - started, serving_cpu_s=child_process.cpu_seconds() - cpu)
  # The same pixels the Transform graph gives (decoded PNG, uint8 -> the model's input).
  pixels = tf.concat([serving.transform(examples=tf.constant(records[i:i + batch]))[
      constants.IMAGE_XF_KEY] for i in range(0, len(records), batch)], axis=0)
  model = keras.saving.load_model(
      os.path.join(prepared['model_run_uri'], trainer.KERAS_MODEL_FILE), compile=False)
  forward = tf.function(lambda images: export.predict_probabilities(model, images, tta))
  forward(pixels[:batch])  # trace once
  cpu, started = child_process.cpu_seconds(), time.time()
  for i in range(0, len(records), batch):
    forward(pixels[i:i + batch])
  result.update(keras_s=time.time() - started, keras_cpu_s=child_process.cpu_seconds() - cpu)
  print(json.dumps(result))


def _watched(argv, what: str) -> dict:
  load = os.getloadavg()[0]
  returncode, out, peak = child_process.run_watched([__file__, *argv], ROOT)
  if returncode != 0 or not out:
    raise SystemExit(f'{what} failed (exit {returncode}); run the child by hand: '
                     f'python {__file__} {" ".join(argv)}')
  result = json.loads(out[-1])
  result.update(peak_rss_mib=peak / 2**20, load=load)
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default=None,
                      help='holds the generated archive and the prepared runs (reused; a temp dir)')
  parser.add_argument('--images', type=int, default=10_000, help='test images of the team\'s classes')
  parser.add_argument('--num-classes', type=int, default=20)
  parser.add_argument('--tta', nargs='+', default=['flip', 'none'],
                      choices=constants.TEST_TIME_AUGMENTATIONS)
  parser.add_argument('--repeat', type=int, default=1)
  parser.add_argument('--no-floor', action='store_true', help='skip the no-Beam reference')
  parser.add_argument('--floor-batch', type=int, default=128)
  parser.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                      help='a Beam arg appended to the Evaluator\'s (later ones win), e.g. '
                      '--beam-arg=--direct_running_mode=multi_processing '
                      '--beam-arg=--direct_num_workers=2 (to weigh a mode before changing the '
                      'pipeline)')
  args = parser.parse_args()
  if args.images % args.num_classes:
    parser.error('--images must be a multiple of --num-classes')
  workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='evaluator_bench_'))
  os.makedirs(workdir, exist_ok=True)
  per_class = args.images // args.num_classes
  data = os.path.join(workdir, f'cifar-100-python-{per_class}.tar.gz')
  if not os.path.exists(data):
    from tests import fixtures  # pylint: disable=g-import-not-at-top
    print(f'Building an archive with {per_class} test images per class at {data} ...', flush=True)
    fixtures.write_cifar100_archive(data, train_per_class=5, test_per_class=per_class)
  output_dir = os.path.join(workdir, f'run-{per_class}-{args.num_classes}')
  print(f'CPU flags: {" ".join(machine.simd_flags())}; {os.cpu_count()} cores', flush=True)
  common = [data, output_dir, str(args.num_classes)]
  for tta in args.tta:
    prepared = _watched(['--child-prepare', *common, tta], 'preparing the model')
    prepared['beam_args'] += args.beam_arg
    artifacts = json.dumps(prepared)
    n = prepared['images']
    for _ in range(args.repeat):
      r = _watched(['--child-evaluate', artifacts], 'the Evaluator')
      print(f'Evaluator, tta {tta}: {n:,} images, {r["seconds"]:.1f} s, '
            f'{n / r["seconds"]:,.0f} images/s, {r["cpu_s"]:.1f} CPU s, '
            f'{r["seconds"] * 10_000 / n:.1f} s per 10,000 images, peak RSS '
            f'{r["peak_rss_mib"]:,.0f} MiB, load {r["load"]:.1f}; Beam args '
            f'{" ".join(a for a in prepared["beam_args"] if not a.startswith("--setup_file"))}',
            flush=True)
    if not args.no_floor:
      f = _watched(['--child-floor', artifacts, tta, str(args.floor_batch)], 'the floor')
      print(f'  floor, tta {tta} (batch {args.floor_batch}): SavedModel load {f["load_s"]:.1f} s '
            f'({f["load_cpu_s"]:.1f} CPU s); serving_default on serialized examples '
            f'{f["serving_s"]:.1f} s ({f["serving_cpu_s"]:.1f} CPU s); Keras forward pass '
            f'{f["keras_s"]:.1f} s ({f["keras_cpu_s"]:.1f} CPU s); peak RSS '
            f'{f["peak_rss_mib"]:,.0f} MiB, load {f["load"]:.1f}', flush=True)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if len(sys.argv) > 1 and sys.argv[1] == '--child-prepare':
    child_prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
  elif len(sys.argv) > 1 and sys.argv[1] == '--child-evaluate':
    child_evaluate(sys.argv[2])
  elif len(sys.argv) > 1 and sys.argv[1] == '--child-floor':
    child_floor(sys.argv[2], sys.argv[3], int(sys.argv[4]))
  else:
    main()
