"""Compiles the same pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2 (and submits it).

    python kubeflow_runner.py --data /gcs/BUCKET/cifar-100-python.tar.gz \\
        --output-dir gs://BUCKET/cifar100 --image REGION-docker.pkg.dev/P/R/cifar100-tfx \\
        [--submit --project P --region R]

Artifacts go to <output-dir>/pipeline_root; ML Metadata is Vertex ML Metadata.

The image must contain this project installed (`pip install .` in TFX 1.16's image,
gcr.io/tfx-oss-public/tfx:1.16.0): the components name its functions
(`modules.trainer.run_fn`, ...; see `pipeline.pipeline`), so compiling packages and uploads no
user code, and needs neither network nor credentials, even for a gs:// --output-dir.

The data path must be readable both here, where the classes are chosen and checked, and by the
pipeline's workers: on Vertex AI, a GCS bucket is mounted at /gcs/BUCKET, so mount it here too
(gcsfuse) or compile with a local copy at the same path.
"""
import os
import sys
from typing import Optional, Sequence

from pipeline import cli
from pipeline.data import resolve_data
from base.errors import UserError


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = cli.build_parser('Compile the pipeline for Vertex AI Pipelines / Kubeflow (v2).')
  g = parser.add_argument_group('Kubeflow / Vertex AI')
  g.add_argument('--image', required=True, help='container image with this project installed')
  g.add_argument('--output-file', default='cifar100_pipeline.json',
                 help='compiled pipeline definition (default %(default)s)')
  g.add_argument('--submit', action='store_true', help='submit to Vertex AI Pipelines')
  g.add_argument('--project', help='GCP project (with --submit)')
  g.add_argument('--region', default='us-central1', help='(with --submit; default %(default)s)')
  args = parser.parse_args(argv)
  config = cli.config_from_args(args)
  data, sizes = resolve_data(config.data)
  config = config.replace(data=data)
  print(f'{len(data.class_names)} classes: {", ".join(data.class_names)}; '
        + ', '.join(f'{k} {v:,}' for k, v in sizes.items()))

  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline.pipeline import check_config, create_pipeline  # pylint: disable=g-import-not-at-top
  config = check_config(config)
  # Beam runs inside the component's container, on all its cores.
  pipeline = create_pipeline(config, beam_args=['--direct_running_mode=multi_processing',
                                                '--direct_num_workers=0'])
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=args.image),
      output_dir=os.path.dirname(os.path.abspath(args.output_file)),
      output_filename=os.path.basename(args.output_file))
  runner.run(pipeline, write_out=True)
  print(f'Compiled to {args.output_file}')
  if args.submit:
    if not args.project:
      raise UserError('--submit needs --project')
    from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top
    aiplatform.init(project=args.project, location=args.region)
    job = aiplatform.PipelineJob(display_name=config.runner.pipeline_name,
                                 template_path=args.output_file,
                                 pipeline_root=config.runner.pipeline_root,
                                 enable_caching=config.runner.enable_cache)
    job.submit()
    print(f'Submitted: {job.resource_name}')


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  cli.run_main(main, sys.argv[1:])
