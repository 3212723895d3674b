"""Google Cloud settings of `kubeflow_runner.py`: Beam on Dataflow, the Trainer and Tuner on Vertex
AI Training (with GPUs), and the checks that run before anything compiles.

Everything here turns flags into what TFX's own components read:
- `--beam-runner dataflow` -> the `beam_pipeline_args` of every Beam component (ExampleGen,
  StatisticsGen, Transform, Evaluator), with the pipeline image as Dataflow's worker container, so
  the workers run this project's code from the same image as every other step;
- `--training-machine-type` (and `--gpu TYPE:COUNT`) -> TFX's Vertex AI Training extension
  (`tfx.extensions.google_cloud_ai_platform`) Trainer and Tuner, whose custom_config carries the
  Vertex AI CustomJob spec: one worker pool with the machine, the accelerator and the image; the
  Tuner runs `--tuner-parallel-trials` search loops at once (the extension adds the workers).
Without these flags the compiled pipeline runs every step in its own component container, as before.
"""
import argparse
import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from base.configs import PipelineConfig
from base.errors import UserError

BEAM_RUNNERS = ('direct', 'dataflow')
DEFAULT_REGION = 'us-central1'
# What Vertex AI's workers can read: a bucket, or the bucket as Vertex mounts it (Cloud Storage FUSE).
CLOUD_PREFIXES = ('gs://', '/gcs/')
# Beam in a component's own container (--beam-runner direct): every core of that machine.
DIRECT_BEAM_ARGS = ('--direct_running_mode=multi_processing', '--direct_num_workers=0')
LOGIN_HINT = ('no Google Cloud credentials: run `gcloud auth application-default login` (or set '
              'GOOGLE_APPLICATION_CREDENTIALS to a service account key file), then submit again')


@dataclasses.dataclass(frozen=True)
class CloudConfig:
  """Where the compiled pipeline runs and on what (kubeflow_runner's Vertex/Dataflow flags)."""
  image: str  # the pipeline image (Dockerfile): every step, Vertex Training and Dataflow workers
  project: Optional[str] = None  # GCP project: --submit, Dataflow and Vertex Training need it
  region: str = DEFAULT_REGION
  submit: bool = False  # submit to Vertex AI Pipelines after compiling
  beam_runner: str = 'direct'  # direct (in each component's container) | dataflow
  temp_location: Optional[str] = None  # Dataflow's gs:// temp folder; None: <output-dir>/tmp
  machine_type: Optional[str] = None  # Dataflow workers; None: Dataflow's default
  max_workers: Optional[int] = None  # Dataflow autoscaling ceiling; None: Dataflow's default
  training_machine_type: Optional[str] = None  # Vertex AI Training; None: train in the step itself
  gpu: Optional[str] = None  # TYPE:COUNT, e.g. NVIDIA_TESLA_T4:1 (needs training_machine_type)
  tuner_parallel_trials: int = 1  # KerasTuner search loops at once on Vertex AI Training

  @property
  def on_google_cloud(self) -> bool:
    """Whether anything of the compiled pipeline needs Google Cloud (and so cloud paths)."""
    return (self.submit or self.beam_runner == 'dataflow'
            or bool(self.training_machine_type or self.gpu))


def add_flags(parser: argparse.ArgumentParser, image_required: bool = True) -> None:
  """kubeflow_runner's flags (and `pipeline.study --runner vertex`'s: they compile for Vertex AI,
  so these are not in pipeline.cli)."""
  c = CloudConfig(image='')
  g = parser.add_argument_group('Kubeflow / Vertex AI')
  g.add_argument('--image', required=image_required,
                 help='the pipeline image with this project installed (Dockerfile, make image)')
  g.add_argument('--output-file', default='cifar100_pipeline.json',
                 help='compiled pipeline definition (default %(default)s)')
  g.add_argument('--submit', action='store_true', help='submit to Vertex AI Pipelines')
  g.add_argument('--project', default=c.project,
                 help='GCP project (--submit, --beam-runner dataflow, --training-machine-type)')
  g.add_argument('--region', default=c.region, help='(default %(default)s)')
  d = parser.add_argument_group('Beam on Dataflow')
  d.add_argument('--beam-runner', choices=BEAM_RUNNERS, default=c.beam_runner,
                 help='direct: in each component\'s container | dataflow (default %(default)s)')
  d.add_argument('--temp-location', default=c.temp_location, metavar='GS_URI',
                 help="Dataflow's temp folder (default <output-dir>/tmp)")
  d.add_argument('--machine-type', default=c.machine_type,
                 help="Dataflow worker machine type, e.g. n2-standard-4 (default: Dataflow's)")
  d.add_argument('--max-workers', type=int, default=c.max_workers,
                 help="Dataflow's most workers (default: Dataflow's)")
  t = parser.add_argument_group('training on Vertex AI Training')
  t.add_argument('--training-machine-type', default=c.training_machine_type,
                 help='train (and tune) as Vertex AI Training jobs on this machine type, e.g. '
                 'n1-standard-8, g2-standard-8, a2-ultragpu-1g (default: in the pipeline step)')
  t.add_argument('--gpu', default=c.gpu, metavar='TYPE:COUNT',
                 help='accelerators of each training machine, e.g. NVIDIA_TESLA_T4:1, '
                 'NVIDIA_L4:1, NVIDIA_A100_80GB:1 (with --training-machine-type)')
  t.add_argument('--tuner-parallel-trials', type=int, default=c.tuner_parallel_trials,
                 help='tuning search loops at once, one machine each (with '
                 '--training-machine-type; default %(default)s)')


def config_from_args(args: argparse.Namespace) -> CloudConfig:
  return CloudConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CloudConfig)})


def is_cloud_path(path: Optional[str]) -> bool:
  return bool(path) and path.startswith(CLOUD_PREFIXES)


def gs_uri(path: str) -> str:
  """A /gcs/BUCKET/... path (Vertex's FUSE mount) as the gs://BUCKET/... URI Dataflow needs."""
  return 'gs://' + path[len('/gcs/'):] if path.startswith('/gcs/') else path


def parse_gpu(value: str) -> Tuple[str, int]:
  """'NVIDIA_TESLA_T4:1' -> ('NVIDIA_TESLA_T4', 1), checked against Vertex AI's accelerator types."""
  kind, _, count = value.partition(':')
  if not count.isdigit() or int(count) < 1:
    raise UserError(f'--gpu {value}: expected TYPE:COUNT, e.g. NVIDIA_TESLA_T4:1')
  from google.cloud.aiplatform_v1.types import accelerator_type  # pylint: disable=g-import-not-at-top
  known = [n for n in accelerator_type.AcceleratorType.__members__ if n.startswith('NVIDIA_')]
  if kind not in known:
    raise UserError(f'--gpu {value}: unknown GPU type {kind!r}; Vertex AI has: {", ".join(known)}')
  return kind, int(count)


def check(cloud: CloudConfig, config: PipelineConfig) -> None:
  """Every check of the cloud flags that needs nothing but the flags, before anything compiles."""
  needs_project = [flag for flag, used in (
      ('--submit', cloud.submit), ('--beam-runner dataflow', cloud.beam_runner == 'dataflow'),
      ('--training-machine-type', bool(cloud.training_machine_type))) if used]
  if needs_project and not cloud.project:
    raise UserError(f'{needs_project[0]} needs --project (the GCP project to run in)')
  if cloud.gpu:
    parse_gpu(cloud.gpu)
    if not cloud.training_machine_type:
      raise UserError(f'--gpu {cloud.gpu} needs --training-machine-type (a machine that takes '
                      'this GPU, e.g. n1-standard-8 for T4, g2-standard-8 for L4)')
  if cloud.tuner_parallel_trials < 1:
    raise UserError(f'--tuner-parallel-trials {cloud.tuner_parallel_trials}: must be 1 or more')
  if cloud.tuner_parallel_trials > 1 and not cloud.training_machine_type:
    raise UserError('--tuner-parallel-trials runs trials on Vertex AI Training: it needs '
                    '--training-machine-type')
  if cloud.max_workers is not None and cloud.max_workers < 1:
    raise UserError(f'--max-workers {cloud.max_workers}: must be 1 or more')
  if cloud.beam_runner != 'dataflow':
    used = [f for f, v in (('--temp-location', cloud.temp_location), ('--machine-type',
            cloud.machine_type), ('--max-workers', cloud.max_workers)) if v is not None]
    if used:
      raise UserError(f'{used[0]} is a Dataflow setting: add --beam-runner dataflow')
  if cloud.temp_location and not cloud.temp_location.startswith(CLOUD_PREFIXES):
    raise UserError(f'--temp-location {cloud.temp_location}: Dataflow needs a gs:// folder')
  if not cloud.on_google_cloud:
    return
  output_dir = config.runner.output_dir
  if not is_cloud_path(output_dir):
    raise UserError(f'--output-dir {output_dir}: Vertex AI cannot write a local path; use '
                    'gs://BUCKET/... (or /gcs/BUCKET/...)')
  if not is_cloud_path(config.data.data):
    raise UserError(f'--data {config.data.data or "(Keras cache)"}: Vertex AI cannot read a '
                    'local path; copy the data to a bucket and pass /gcs/BUCKET/... (mounted '
                    'here with gcsfuse, or a local copy at that path)')


def beam_args(cloud: CloudConfig, config: PipelineConfig) -> List[str]:
  """The `beam_pipeline_args` of every Beam component: DirectRunner in each component's container,
  or Dataflow with the pipeline image as its workers' container (the project's code is in it)."""
  if cloud.beam_runner == 'direct':
    return list(DIRECT_BEAM_ARGS)
  temp = gs_uri(cloud.temp_location or config.runner.output_dir.rstrip('/') + '/tmp')
  args = ['--runner=DataflowRunner', f'--project={cloud.project}', f'--region={cloud.region}',
          f'--temp_location={temp}', f'--sdk_container_image={cloud.image}']
  if cloud.machine_type:
    args.append(f'--machine_type={cloud.machine_type}')
  if cloud.max_workers:
    args.append(f'--max_num_workers={cloud.max_workers}')
  return args


@dataclasses.dataclass(frozen=True)
class VertexTraining:
  """Builds the Trainer and Tuner of TFX's Vertex AI Training extension for `create_pipeline`.

  Each takes the same arguments as the local component; its custom_config gains the Vertex keys the
  extension's executors read (ENABLE_VERTEX_KEY, VERTEX_REGION_KEY, TRAINING_ARGS_KEY or
  TUNING_ARGS_KEY), and `fn_args.custom_config` still holds everything `run_fn`/`tuner_fn` read.
  """
  project: str
  region: str
  image: str
  machine_type: str
  gpu_type: Optional[str] = None
  gpu_count: int = 0
  parallel_trials: int = 1

  def worker_pool(self, replicas: int = 1) -> Dict[str, Any]:
    """One Vertex AI CustomJob worker pool: the machine, its GPUs, our image."""
    machine = {'machine_type': self.machine_type}
    if self.gpu_type:
      machine.update(accelerator_type=self.gpu_type, accelerator_count=self.gpu_count)
    return {'machine_spec': machine, 'replica_count': replicas,
            'container_spec': {'image_uri': self.image}}

  def job_args(self, pools: int = 1) -> Dict[str, Any]:
    """The CustomJob the extension submits (its `project` key names the project to bill)."""
    specs = [self.worker_pool(1)] + ([self.worker_pool(self.parallel_trials - 1)]
                                     if pools > 1 else [])
    return {'project': self.project, 'job_spec': {'worker_pool_specs': specs}}

  def _vertex_keys(self):
    from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
    ext = tfx.extensions.google_cloud_ai_platform
    return ext, {ext.ENABLE_VERTEX_KEY: True, ext.VERTEX_REGION_KEY: self.region}

  def trainer(self, custom_config: Dict[str, Any], **kwargs):
    ext, keys = self._vertex_keys()
    return ext.Trainer(custom_config={**custom_config, **keys,
                                      ext.TRAINING_ARGS_KEY: self.job_args()}, **kwargs)

  def tuner(self, custom_config: Dict[str, Any], **kwargs):
    """The chief pool runs one search loop; with parallel trials a second pool runs the others
    (the extension's layout: https://cloud.google.com/vertex-ai/docs/training/distributed-training)."""
    from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
    ext, keys = self._vertex_keys()
    tuning_args_key = ext.experimental.TUNING_ARGS_KEY
    pools = 2 if self.parallel_trials > 1 else 1
    return ext.Tuner(
        custom_config={**custom_config, **keys, tuning_args_key: self.job_args(pools)},
        tune_args=tfx.proto.TuneArgs(num_parallel_trials=self.parallel_trials), **kwargs)


def vertex_training(cloud: CloudConfig) -> Optional[VertexTraining]:
  """The Vertex AI Training builder of a checked config, or None to train in the pipeline step."""
  if not cloud.training_machine_type:
    return None
  gpu_type, gpu_count = parse_gpu(cloud.gpu) if cloud.gpu else (None, 0)
  return VertexTraining(project=cloud.project, region=cloud.region, image=cloud.image,
                        machine_type=cloud.training_machine_type, gpu_type=gpu_type,
                        gpu_count=gpu_count, parallel_trials=cloud.tuner_parallel_trials)


def check_credentials() -> None:
  """Google's application-default credentials, or one line on how to log in (before compiling)."""
  import google.auth  # pylint: disable=g-import-not-at-top
  from google.auth import exceptions  # pylint: disable=g-import-not-at-top
  try:
    google.auth.default()
  except exceptions.DefaultCredentialsError as e:
    raise UserError(LOGIN_HINT) from e


def submit(cloud: CloudConfig, config: PipelineConfig, template_path: str) -> str:
  """Submits the compiled pipeline to Vertex AI Pipelines; returns the job's resource name."""
  from google.auth import exceptions  # pylint: disable=g-import-not-at-top
  from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top
  try:
    aiplatform.init(project=cloud.project, location=cloud.region)
    job = aiplatform.PipelineJob(display_name=config.runner.pipeline_name,
                                 template_path=template_path,
                                 pipeline_root=gs_uri(config.runner.pipeline_root),
                                 enable_caching=config.runner.enable_cache)
    job.submit()
  except exceptions.DefaultCredentialsError as e:
    raise UserError(LOGIN_HINT) from e
  return job.resource_name
