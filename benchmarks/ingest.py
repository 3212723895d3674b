"""ExampleGen speed and memory on a full-size CIFAR-100 archive (50,000 + 10,000 images).

Builds an archive in the exact CIFAR-100 format (generated pixels), then runs only the ExampleGen
component with LocalDagRunner, once per configuration, each in a fresh process, and prints images
per second (all images written / wall time of the run, Beam start-up included, imports excluded)
the CPU seconds it used (its Beam workers included) and the peak resident memory of the whole
process tree (sampled every 50 ms), beside the machine's 1-minute load average when the run
started: others' jobs slow the wall time down, not the CPU time; repeat and compare.

    python benchmarks/ingest.py [--workdir DIR] [--classes 80 100] [--beam-workers 0 2] [--repeat N]

Targets (docs/benchmarks.md): >= 4,000 images/s end to end and peak RSS < 2 GiB on 2 cores.
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


def run_one(archive: str, num_classes: int, workers: int, workdir: str) -> dict:
  """Runs ExampleGen in a child process; returns its timing and the tree's peak RSS."""
  output_dir = tempfile.mkdtemp(dir=workdir)
  load = os.getloadavg()[0]
  returncode, out, peak = child_process.run_watched(
      [__file__, '--child', archive, str(num_classes), str(workers), output_dir], ROOT)
  shutil.rmtree(output_dir, ignore_errors=True)  # ~170 MB of examples per run
  if returncode != 0 or not out:
    raise SystemExit(f'benchmark run failed (exit {returncode})')
  result = json.loads(out[-1])
  result.update(peak_rss_mib=peak / 2**20, load=load)
  return result


def child_main(archive: str, num_classes: int, workers: int, output_dir: str) -> None:
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from base.configs import DataConfig, PipelineConfig, RunnerConfig
  from pipeline.data import resolve_data
  from pipeline.pipeline import beam_pipeline_args, make_example_gen
  config = PipelineConfig(
      data=DataConfig(data=archive, trust_data=True, num_classes=num_classes, beam_workers=workers),
      runner=RunnerConfig(output_dir=output_dir, enable_cache=False))
  data, sizes = resolve_data(config.data)
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='ingest_benchmark', pipeline_root=config.runner.pipeline_root,
      components=[make_example_gen(data)], enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          config.runner.metadata_path),
      beam_pipeline_args=beam_pipeline_args(config.replace(data=data)))
  cpu = sum(os.times()[:4])  # user + system, of this process and its reaped children
  started = time.time()
  tfx.orchestration.LocalDagRunner().run(pipeline)
  seconds = time.time() - started
  images = sum(sizes.values())
  print(json.dumps({'classes': num_classes, 'workers': workers, 'images': images,
                    'seconds': seconds, 'images_per_s': images / seconds,
                    'cpu_s': sum(os.times()[:4]) - cpu}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default=None, help='where to build the archive (a temp dir)')
  parser.add_argument('--classes', type=int, nargs='+', default=[80, 100])
  parser.add_argument('--beam-workers', type=int, nargs='+', default=[0, 2])
  parser.add_argument('--repeat', type=int, default=1, help='runs of each configuration')
  args = parser.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix='ingest_bench_')
  os.makedirs(workdir, exist_ok=True)
  archive = os.path.join(workdir, 'cifar-100-python.tar.gz')
  if not os.path.exists(archive):
    from tests import fixtures  # pylint: disable=g-import-not-at-top
    print(f'Building a full-size archive at {archive} ...', flush=True)
    fixtures.write_cifar100_archive(archive, train_per_class=500, test_per_class=100)
  print(f'{"classes":>7} {"workers":>7} {"images":>7} {"seconds":>8} {"images/s":>9} '
        f'{"CPU s":>6} {"peak RSS":>9} {"load":>5}')
  for num_classes in args.classes:
    for workers in args.beam_workers:
      for _ in range(args.repeat):
        r = run_one(archive, num_classes, workers, workdir)
        print(f'{r["classes"]:>7} {r["workers"]:>7} {r["images"]:>7} {r["seconds"]:>8.1f} '
              f'{r["images_per_s"]:>9,.0f} {r["cpu_s"]:>6.1f} {r["peak_rss_mib"]:>5,.0f} MiB '
              f'{r["load"]:>5.1f}',
              flush=True)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if len(sys.argv) > 1 and sys.argv[1] == '--child':
    child_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
  else:
    main()
