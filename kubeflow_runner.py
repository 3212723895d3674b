"""Compiles the same pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2 (and submits it).

    python kubeflow_runner.py --data /gcs/BUCKET/cifar-100-python.tar.gz \\
        --output-dir gs://BUCKET/cifar100 --image REGION-docker.pkg.dev/P/R/cifar100-tfx \\
        [--beam-runner dataflow] [--training-machine-type n1-standard-8 --gpu NVIDIA_TESLA_T4:1] \\
        [--submit] --project P --region R

Artifacts go to <output-dir>/pipeline_root; ML Metadata is Vertex ML Metadata. docs/vertex.md
walks through the bucket, the service account, the image, compiling and submitting.

The image (Dockerfile, `make image`) is TFX's own with this project installed: the components name
its functions (`modules.trainer.run_fn`, ...; see `pipeline.pipeline`), so compiling packages and
uploads no user code, and needs neither network nor credentials, even for a gs:// --output-dir.
`--beam-runner dataflow` runs the Beam components on Dataflow with that image as the workers'
container; `--training-machine-type` (with `--gpu TYPE:COUNT`) runs the Trainer and the Tuner as
Vertex AI Training jobs (pipeline/vertex.py).

The data path must be readable both here, where the classes are chosen and checked, and by the
pipeline's workers: on Vertex AI, a GCS bucket is mounted at /gcs/BUCKET, so mount it here too
(gcsfuse) or compile with a local copy at the same path. Anything that runs on Google Cloud
(--submit, Dataflow, Vertex AI Training) refuses local --data and --output-dir paths before
compiling.
"""
import dataclasses
import os
import sys
from typing import Optional, Sequence

from pipeline import cli, vertex
from pipeline.data import resolve_data


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = cli.build_parser('Compile the pipeline for Vertex AI Pipelines / Kubeflow (v2).')
  vertex.add_flags(parser)
  args = parser.parse_args(argv)
  config = cli.config_from_args(args)
  cloud = vertex.config_from_args(args)
  vertex.check(cloud, config)
  if cloud.submit:
    vertex.check_credentials()
  if cloud.on_google_cloud:  # Vertex AI's pipeline root and Dataflow take gs:// URIs only
    config = config.replace(runner=dataclasses.replace(
        config.runner, output_dir=vertex.gs_uri(config.runner.output_dir)))
  data, sizes = resolve_data(config.data)
  config = config.replace(data=data)
  print(f'{len(data.class_names)} classes: {", ".join(data.class_names)}; '
        + ', '.join(f'{k} {v:,}' for k, v in sizes.items()))

  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline.pipeline import check_config, create_pipeline  # pylint: disable=g-import-not-at-top
  config = check_config(config)
  pipeline = create_pipeline(config, beam_args=vertex.beam_args(cloud, config),
                             vertex_training=vertex.vertex_training(cloud))
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=cloud.image),
      output_dir=os.path.dirname(os.path.abspath(args.output_file)),
      output_filename=os.path.basename(args.output_file))
  runner.run(pipeline, write_out=True)
  print(f'Compiled to {args.output_file}')
  if cloud.submit:
    print(f'Submitted: {vertex.submit(cloud, config, args.output_file)}')


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  cli.run_main(main, sys.argv[1:])
