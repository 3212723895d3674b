"""The one typed configuration of a pipeline run.

`PipelineConfig` is built from the command line (`pipeline.cli`), resolved once at the edge
(`pipeline.data.resolve_data`: find the archive, pick the classes) and then passed, read-only, to
`create_pipeline` and to both runners. Every default lives here and nowhere else.
"""
import dataclasses
import os
from typing import Optional, Tuple

COURSE_CLASS_COUNTS = (20, 40, 60, 80)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the images come from and which classes the team uses."""
  # None: Keras' CIFAR-100 cache (download it when absent); else a cifar-100-python.tar.gz,
  # its extracted cifar-100-python/ folder, or an image folder PATH/train/<class>/*.
  data: Optional[str] = None
  trust_data: bool = False  # accept an archive whose MD5 is not the official one
  team_seed: int = 0  # row of the class table; seed of the class rule and of the eval split
  num_classes: Optional[int] = None  # None: 20 for CIFAR-100 (course: 20/40/60/80); all of a folder's
  class_table: Optional[str] = None  # CSV path or URL: row = team seed, N fine-label ids
  classes: Tuple[str, ...] = ()  # explicit class names or ids; overrides table and rule
  eval_fraction: float = 0.15  # of each class's training images, held out as `eval`
  test_fraction: float = 0.2  # image folders without test/: last files of each class
  beam_workers: int = 0  # 0: DirectRunner in-process; N>0: multi_processing with N workers

  # Filled by pipeline.data.resolve_data (not flags): what the pipeline actually reads.
  source: str = ''  # one of constants.SOURCE_*
  source_path: str = ''  # the archive, cifar-100-python/ folder or image folder
  class_names: Tuple[str, ...] = ()  # the team's classes, sorted; label = index here
  fine_label_ids: Tuple[int, ...] = ()  # their ids in the source (CIFAR-100 ids, folder index)
  coarse_names: Tuple[str, ...] = ()  # superclass of each class
  stored_image_size: int = 32  # side of the stored images (CIFAR: 32; an image folder's own)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """The model and how it trains. The defaults are the best from-scratch recipe measured on this
  project's 2-core CPU (docs/results.md)."""
  model: str = 'resnet'  # a key of modules.models.MODELS
  image_size: Optional[int] = None  # side the model sees (resized inside it); None: model default
  weights: str = 'imagenet'  # transfer models: imagenet | none | PATH of a no-top .h5 file
  alpha: float = 1.0  # MobileNet width multiplier
  dropout: Optional[float] = None  # None: the builder's default
  width: Optional[int] = None  # resnet, airbench: channels of the first stage; None: the builder's
  # transfer models: 0 frozen backbone, K top layers, or 'all'; None: the model's (all for
  # mobilenet, 0 for the other backbones: modules/models.py)
  fine_tune_layers: Optional[str] = None
  head_epochs: int = 2  # transfer models with fine_tune_layers != 0: head-only epochs first
  fine_tune_learning_rate: float = 1e-4  # learning rate once backbone layers train
  # Epochs after the head epochs (for transfer models that fine-tune): exactly these with no
  # time budget, the most a time budget may choose with one.
  epochs: int = 45
  # Minutes that training (head epochs, fine-tuning and validation included) may take on this
  # machine: the epochs are chosen from the step time measured in the first epoch. None: exactly
  # `epochs`. 15 minutes keep a first run on a 2-core AVX2 CPU under 30 minutes (docs/results.md).
  time_budget: Optional[float] = 15.0
  batch_size: int = 128  # examples per step
  # adam | adamw | sgd (nesterov momentum) | rmsprop | muon; None: the model's (muon for resnet and
  # airbench, else adam)
  optimizer: Optional[str] = None
  learning_rate: Optional[float] = None  # peak (after warmup); None: the model's (0.1 / 1e-3)
  momentum: float = 0.9  # sgd
  schedule: str = 'cosine'  # constant | cosine (with warmup) | plateau (reduce on plateau)
  warmup_epochs: float = 1.0  # cosine only
  weight_decay: float = 5e-4  # decoupled, on kernels only
  label_smoothing: float = 0.1
  augment: str = 'basic'  # none | basic (flip, pad-and-crop) | strong (+ rotation, zoom, contrast)
  cutout: int = 0  # side of a random square set to the image's mean colour (train only); 0: off
  early_stopping_patience: int = 0  # epochs without val_accuracy gain; 0: off
  # auto: mixed_float16 on tensor-core GPUs, mixed_bfloat16 on CPUs with native bfloat16
  # (AVX512-BF16, AMX), else float32 | float32 | mixed_float16 | mixed_bfloat16
  precision: str = 'auto'
  jit: bool = False  # XLA; pays on GPUs, 8-10x slower on this CPU
  seed: int = 0  # weights, shuffling, augmentation
  steps_per_epoch: Optional[int] = None  # None: one pass over the train split
  tta: str = 'flip'  # test-time augmentation of the exported model: none | flip | flip_shift


@dataclasses.dataclass(frozen=True)
class TuningConfig:
  """Hyperparameter search before training (off unless `tuner` is set)."""
  tuner: Optional[str] = None  # random | hyperband | bayesian; None: no Tuner
  tuner_trials: int = 10  # random and bayesian
  tuner_epochs: int = 3  # epochs per trial (hyperband: the most any trial gets)
  hyperparameters: Optional[str] = None  # best_hyperparameters.txt of an earlier search


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
  """When the Evaluator blesses a model (and so the Pusher pushes it)."""
  min_accuracy: float = 0.0  # test accuracy at or above this
  compare_to_baseline: bool = True  # and not below the latest blessed model's


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
  """Where outputs go and how the pipeline runs."""
  pipeline_name: str = 'cifar100'
  output_dir: str = './outputs'  # holds metadata.sqlite and pipeline_root/
  enable_cache: bool = True

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_dir, 'pipeline_root')

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_dir, 'metadata.sqlite')

  @property
  def study_ledger_path(self) -> str:
    """pipeline.study's record of each run it starts (pipeline.runs reads it): a run that fails
    before its Trainer, which records the study tag, stays attributable to its variant."""
    return os.path.join(self.output_dir, 'study_runs.jsonl')

  @property
  def serving_model_dir(self) -> str:
    """Where the Pusher puts blessed models: <this>/<version>/."""
    return os.path.join(self.output_dir, 'serving_model', self.pipeline_name)


@dataclasses.dataclass(frozen=True)
class StudyTag:
  """Which study and variant a run belongs to (`pipeline.study` sets it; empty for a plain run).

  Recorded in the Trainer's custom_config (key `constants.STUDY`), so ML Metadata holds it with
  the run and `pipeline.inspect` and `pipeline.report` read it back; the seed is the training's.
  """
  study: str = ''  # the study's name, e.g. 'augmentation'
  variant: str = ''  # the variant's label, e.g. 'augment=strong'


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  data: DataConfig = DataConfig()
  training: TrainingConfig = TrainingConfig()
  tuning: TuningConfig = TuningConfig()
  evaluation: EvaluationConfig = EvaluationConfig()
  runner: RunnerConfig = RunnerConfig()
  study: StudyTag = StudyTag()

  def replace(self, **groups) -> 'PipelineConfig':
    return dataclasses.replace(self, **groups)
