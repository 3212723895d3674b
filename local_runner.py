"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata under --output-dir.

    python local_runner.py --data PATH [--team-seed 3 --num-classes 40 ...]
    python local_runner.py --help
"""
import os
import sys
import time
from typing import Optional, Sequence

from pipeline import cli
from pipeline.data import resolve_data


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = cli.build_parser('Train and evaluate image classifiers on a team\'s CIFAR-100 classes '
                            '(TFX, run locally).')
  config = cli.config_from_args(parser.parse_args(argv))
  cli.check_writable_dir(config.runner.output_dir)
  data, sizes = resolve_data(config.data)
  config = config.replace(data=data)
  print(f'{len(data.class_names)} classes from {data.source_path}: {", ".join(data.class_names)}')
  print('images per split: ' + ', '.join(f'{k} {v:,}' for k, v in sizes.items()), flush=True)

  # TFX and TensorFlow take seconds to import: only once the data is known to be good.
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline.pipeline import check_config, create_pipeline  # pylint: disable=g-import-not-at-top
  config = check_config(config)
  metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      config.runner.metadata_path)
  started = time.time()
  tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))
  print(f'Pipeline {config.runner.pipeline_name} finished in {time.time() - started:.0f} s; '
        f'artifacts in {os.path.abspath(config.runner.pipeline_root)}, '
        f'metadata in {os.path.abspath(config.runner.metadata_path)}')


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  cli.run_main(main, sys.argv[1:])
