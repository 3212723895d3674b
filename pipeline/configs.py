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


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  data: DataConfig = DataConfig()
  runner: RunnerConfig = RunnerConfig()

  def replace(self, **groups) -> 'PipelineConfig':
    return dataclasses.replace(self, **groups)
