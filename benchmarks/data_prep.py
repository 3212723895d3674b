"""Data preparation speed and memory: ExampleGen -> ... -> Transform, as a default run does it.

Runs the pipeline's own components up to Transform (ExampleGen, StatisticsGen, SchemaGen, the
curated schema, ExampleValidator, the validation gate, Transform: taken from `create_pipeline`,
so the wiring, custom_config and Beam args are a default run's) with LocalDagRunner, in a fresh
process per run, and prints each component's seconds (from ML Metadata, as `pipeline.inspect
--run` shows them) and CPU seconds (user + system, which other jobs' load does not change),
images/s from ExampleGen's start to Transform's end, the CPU seconds of the
run (Beam workers included), the peak resident memory of the whole process tree (sampled every
50 ms), the size of Transform's output, the machine's CPU flags and its 1-minute load average.

    python benchmarks/data_prep.py --data ARCHIVE_OR_FOLDER [--model resnet] [--repeat N]
    python benchmarks/data_prep.py --generate DIR      # builds a full-size archive in DIR first
    python benchmarks/data_prep.py --data D --exec-property StatisticsGen.exclude_splits='["test"]'

Targets (docs/benchmarks.md): >= 5,000 images/s from ExampleGen's start to Transform's end and
peak RSS < 2 GiB on 2 cores.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import child_process  # benchmarks/ (the script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from base import machine  # pylint: disable=wrong-import-position

# The components of a default run before training, in DAG order (their ids in create_pipeline).
DATA_PREP_IDS = ('Cifar100ExampleGen', 'StatisticsGen', 'SchemaGen', 'CuratedSchemaGen',
                 'ExampleValidator', 'ValidationGate', 'Transform')


def _dir_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(path) for name in names)


def run_one(data: str, model: str, num_classes: int, workdir: str, keep: bool,
            overrides: str) -> dict:
  """Runs the data-preparation components in a child process; its timings and peak tree RSS."""
  output_dir = tempfile.mkdtemp(dir=workdir)
  load = os.getloadavg()[0]
  returncode, out, peak = child_process.run_watched(
      [__file__, '--child', data, model, str(num_classes), output_dir, overrides], ROOT)
  if not keep:
    shutil.rmtree(output_dir, ignore_errors=True)
  if returncode != 0 or not out:
    raise SystemExit(f'benchmark run failed (exit {returncode}); outputs in {output_dir}')
  result = json.loads(out[-1])
  result.update(peak_rss_mib=peak / 2**20, load=load, output_dir=output_dir)
  return result


def _component_seconds(output_dir: str) -> dict:
  """Component id -> seconds of its execution in the run (ML Metadata's create/update times)."""
  from pipeline import runs  # pylint: disable=g-import-not-at-top
  details = runs.run_details(runs.open_store(output_dir), runs.LATEST, sections=())
  return {e['component']: e['duration_sec'] for e in details['executions']}


def _record_component_cpu(cpu_s: dict) -> None:
  """Makes each component launch add its CPU seconds (user + system, this process and its reaped
  children: LocalDagRunner runs the components one after another in this process) to `cpu_s`."""
  from tfx.orchestration.portable import launcher  # pylint: disable=g-import-not-at-top
  launch = launcher.Launcher.launch

  def timed_launch(self):
    before = child_process.cpu_seconds()
    try:
      return launch(self)
    finally:
      node_id = self._pipeline_node.node_info.id  # pylint: disable=protected-access
      cpu_s[node_id] = cpu_s.get(node_id, 0.0) + child_process.cpu_seconds() - before

  launcher.Launcher.launch = timed_launch


def child_main(data_path: str, model: str, num_classes: int, output_dir: str,
               overrides: str) -> None:
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from base.configs import DataConfig, PipelineConfig, RunnerConfig, TrainingConfig
  from pipeline.data import resolve_data
  from pipeline.pipeline import create_pipeline
  config = PipelineConfig(
      data=DataConfig(data=data_path, trust_data=True, num_classes=num_classes or None),
      training=TrainingConfig(model=model),
      runner=RunnerConfig(output_dir=output_dir, enable_cache=False))
  data, sizes = resolve_data(config.data)
  config = config.replace(data=data)
  full = create_pipeline(
      config, tfx.orchestration.metadata.sqlite_metadata_connection_config(
          config.runner.metadata_path))
  components = [c for c in full.components if c.id in DATA_PREP_IDS]
  missing = set(DATA_PREP_IDS) - {c.id for c in components}
  if missing:
    raise SystemExit(f'create_pipeline has no component(s) {sorted(missing)}')
  for component_id, properties in json.loads(overrides).items():  # --exec-property
    next(c for c in components if c.id == component_id).exec_properties.update(properties)
  for component in components:  # the trimmed graph ends at Transform
    component._downstream_nodes = {  # pylint: disable=protected-access
        n for n in component.downstream_nodes if n.id in DATA_PREP_IDS}
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='data_prep_benchmark', pipeline_root=config.runner.pipeline_root,
      components=components, enable_cache=False,
      metadata_connection_config=full.metadata_connection_config,
      beam_pipeline_args=full.beam_pipeline_args)
  component_cpu = {}
  _record_component_cpu(component_cpu)
  cpu = child_process.cpu_seconds()
  started = time.time()
  tfx.orchestration.LocalDagRunner().run(pipeline)
  seconds = time.time() - started
  transformed = os.path.join(config.runner.pipeline_root, 'Transform', 'transformed_examples')
  print(json.dumps({
      'data': data_path, 'model': model, 'images': sum(sizes.values()), 'seconds': seconds,
      'cpu_s': child_process.cpu_seconds() - cpu, 'components': _component_seconds(output_dir),
      'component_cpu_s': component_cpu,
      'transformed_mib': _dir_bytes(transformed) / 2**20 if os.path.isdir(transformed) else 0.0,
  }))


def _property_value(text: str):
  """An exec property given on the command line: JSON when it parses (numbers, lists), else the
  string itself. A list becomes its JSON text, as TFX stores list-valued properties
  (StatisticsGen's exclude_splits)."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError:
    return text
  return json.dumps(value) if isinstance(value, (list, dict)) else value


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', help='a CIFAR-100 archive or an image folder')
  parser.add_argument('--generate', metavar='DIR',
                      help='build (once) a full-size generated archive in DIR and use it')
  parser.add_argument('--model', default='resnet',
                      help='the run\'s --model (Transform\'s output no longer depends on it)')
  parser.add_argument('--classes', type=int, default=0,
                      help='the run\'s --num-classes (default: a default run\'s, 20 of CIFAR-100, '
                      'all of a folder)')
  parser.add_argument('--repeat', type=int, default=1)
  parser.add_argument('--workdir', default=None, help='where runs write (a temp dir)')
  parser.add_argument('--transform-option', action='append', default=[], metavar='KEY=INT',
                      help='override one of Transform\'s exec properties, e.g. '
                      'disable_statistics=1 (to weigh an option before changing the pipeline)')
  parser.add_argument('--exec-property', action='append', default=[],
                      metavar='COMPONENT.KEY=VALUE',
                      help='override any data component\'s exec property (VALUE as JSON, else '
                      'a string), e.g. StatisticsGen.exclude_splits=\'["eval", "test"]\'')
  parser.add_argument('--keep', action='store_true', help='keep each run\'s outputs')
  args = parser.parse_args()
  data = args.data
  if args.generate:
    os.makedirs(args.generate, exist_ok=True)
    data = os.path.join(args.generate, 'cifar-100-python.tar.gz')
    if not os.path.exists(data):
      from tests import fixtures  # pylint: disable=g-import-not-at-top
      print(f'Building a full-size archive at {data} ...', flush=True)
      fixtures.write_cifar100_archive(data, train_per_class=500, test_per_class=100)
  if not data:
    parser.error('pass --data or --generate')
  overrides = {}
  # --transform-option KEY=INT is --exec-property Transform.KEY=INT (the recorded commands use it).
  for option in [f'Transform.{o}' for o in args.transform_option] + args.exec_property:
    target, equals, value = option.partition('=')
    component_id, dot, key = target.partition('.')
    if not (equals and dot and key):
      parser.error(f'--exec-property {option}: expected COMPONENT.KEY=VALUE')
    if component_id not in DATA_PREP_IDS:
      parser.error(f'--exec-property {option}: no component {component_id!r}; one of '
                   f'{", ".join(DATA_PREP_IDS)}')
    overrides.setdefault(component_id, {})[key] = _property_value(value)
  overrides = json.dumps(overrides)
  workdir = args.workdir or tempfile.mkdtemp(prefix='data_prep_bench_')
  os.makedirs(workdir, exist_ok=True)
  print(f'CPU flags: {" ".join(machine.simd_flags())}; {os.cpu_count()} cores', flush=True)
  for _ in range(args.repeat):
    r = run_one(os.path.abspath(data), args.model, args.classes, workdir, args.keep, overrides)
    parts = ', '.join(f'{k} {v:.1f}' for k, v in r['components'].items())
    cpu_parts = ', '.join(f'{k} {v:.1f}' for k, v in r['component_cpu_s'].items())
    print(f'{r["images"]:,} images, {r["seconds"]:.1f} s, {r["images"] / r["seconds"]:,.0f} '
          f'images/s, {r["cpu_s"]:.1f} CPU s, peak RSS {r["peak_rss_mib"]:,.0f} MiB, Transform '
          f'output {r["transformed_mib"]:.0f} MiB, load {r["load"]:.1f}\n  seconds: {parts}'
          f'\n  CPU s: {cpu_parts}'
          + (f'\n  outputs: {r["output_dir"]}' if args.keep else ''), flush=True)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if len(sys.argv) > 1 and sys.argv[1] == '--child':
    child_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
  else:
    main()
