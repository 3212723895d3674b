"""Studies: how one setting changes the result, measured with this pipeline's own runs.

    python -m pipeline.study NAME [local_runner.py flags] [--values V1,V2,...] [--seeds K] [--dry-run]
    python -m pipeline.study NAME --vary FLAG=V1,V2,... [--vary FLAG=...] [flags] [--seeds K]

A study runs each of its variants (and each seed, `--seeds K`: the base `--seed` and the K - 1
after it) as one pipeline run in the same output dir, so every run lands in the same ML Metadata
store, tagged with its study, variant and seed (`--study NAME --variant LABEL --seed S` of
`local_runner.py`), where `pipeline.inspect` and `pipeline.report` read them. The other flags are
the base config every variant shares. Named studies (`STUDIES`) derive their default variants from
the base config; `--values` replaces them; `--vary` makes a custom study from any value flag, and
two `--vary` give the grid.

Nothing is done twice: the data components and Transform depend only on the data and the
preprocessing, so TFX's cache runs them once per distinct data and preprocessing config and every
other variant reuses their outputs; a variant whose run is already COMPLETE in the store (same
pipeline, study, variant and seed) is skipped, so a study started again after an interruption or a
failure runs only what is missing. Every variant's config is checked before the first run starts.
Each run started is also written to the output dir's study ledger (`pipeline.runs.append_ledger`),
so a run that fails before its Trainer, which records the tag, still counts as its variant's.
"""
import argparse
import collections
import dataclasses
import datetime
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from base import constants
from base import machine
from base.configs import DataConfig, PipelineConfig, RunnerConfig, TrainingConfig
from base.errors import UserError
from pipeline import cli
from pipeline import console
from pipeline import vertex

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_RUNNER = os.path.join(_ROOT, 'local_runner.py')
KUBEFLOW_RUNNER = os.path.join(_ROOT, 'kubeflow_runner.py')
# local: each run here, one after another, in the output dir's store; vertex: each run compiled as
# its own Vertex AI pipeline job (kubeflow_runner.py) and, with --submit, all submitted at once.
RUNNERS = ('local', 'vertex')

# A study compares its variants by their own test accuracy. The Evaluator's baseline (the latest
# blessed model of the pipeline) would be another variant's model: it would evaluate a second
# model in every run and bless (and push) only variants that beat the ones run before them.
STUDY_RUN_FLAGS = ('--no-baseline',)

# Run states that count as done (pipeline.runs.run_state): CACHED is a run whose every
# component reused a COMPLETE run's outputs.
DONE_STATES = ('COMPLETE', 'CACHED')

# Flags a variant may not set: they say where and as what the study's runs are recorded, or are
# set by the study itself (`--seeds` for the seed).
_NOT_VARIABLE = ('output_dir', 'pipeline_name', 'enable_cache', 'study', 'variant', 'seed')

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


# ---------------------------------------------------------------- variants ------------------

@dataclasses.dataclass(frozen=True)
class Variant:
  """One point of a study: the flag values it sets, by flag dest (`augment`, `fine_tune_layers`).

  `settings` name the variant (its label); `implied` are values the variant needs but that do not
  distinguish it (e.g. `--alpha 1.0` for a from-scratch model when the base sets a MobileNet
  width), so labels stay short and comparable across base configs.
  """
  settings: Tuple[Tuple[str, str], ...]
  implied: Tuple[Tuple[str, str], ...] = ()

  @property
  def label(self) -> str:
    """'augment=strong', 'model=mobilenet,fine_tune_layers=all': stable and readable."""
    return ','.join(f'{key}={value}' for key, value in self.settings)

  def values(self) -> Dict[str, str]:
    return dict(self.implied + self.settings)


def _variant(**settings: Any) -> Variant:
  return Variant(tuple((k, str(v)) for k, v in settings.items()))


def number(value: float) -> str:
  """A derived number as a flag value and in labels: 0.0003, not 0.00030000000000000003."""
  return f'{value:g}'


def _spec(model: str):
  from modules import models  # pylint: disable=g-import-not-at-top
  try:
    return models.get_spec(model)
  except ValueError as e:
    raise UserError(str(e)) from e


def _training_defaults(training: TrainingConfig) -> TrainingConfig:
  """The base training config with the model's own optimizer and learning rate filled in."""
  spec = _spec(training.model)
  return dataclasses.replace(
      training, optimizer=training.optimizer or spec.optimizer,
      learning_rate=spec.learning_rate if training.learning_rate is None else training.learning_rate)


# -- transfer_vs_scratch

FROM_SCRATCH_MODELS = ('resnet', 'simple_cnn')
DEFAULT_TRANSFER_MODEL = 'mobilenet'  # the one with ImageNet weights on this project's machines


def transfer_values(base: PipelineConfig) -> List[str]:
  """The from-scratch models and one transfer model: the base's if it is one, else MobileNet."""
  model = base.training.model
  return [*FROM_SCRATCH_MODELS, model if _spec(model).transfer else DEFAULT_TRANSFER_MODEL]


def transfer_variants(model: str, base: PipelineConfig) -> List[Variant]:
  """A from-scratch model once; a transfer model frozen (`fine_tune_layers=0`, only its new head
  trains) and fine-tuned (`all`: the head alone for --head-epochs, then every layer at
  --fine-tune-learning-rate), both on the base's --weights (ImageNet unless a PATH is given)."""
  if _spec(model).transfer:
    return [_variant(model=model, fine_tune_layers='0'),
            _variant(model=model, fine_tune_layers='all')]
  # --alpha is MobileNet's width: the from-scratch builders refuse any other value than 1.0.
  implied = (('alpha', '1.0'),) if base.training.alpha != 1.0 else ()
  return [Variant((('model', model),), implied)]


# -- fine_tune_layers

def fine_tune_values_for_depth(depth: int) -> List[str]:
  """0 (frozen), a few (the top ~10% of the backbone's layers, at least one), about half, all.

  Counted in backbone layers, the unit of --fine-tune-layers (`models.set_fine_tune_layers`):
  the top layers are the most ImageNet-specific, so a few of them adapt the features at little
  cost, half retrains most of the network, and `all` is full fine-tuning (BatchNorm layers stay
  frozen in every case).
  """
  few, half = max(1, round(depth / 10)), max(1, depth // 2)
  return ['0', *[str(n) for n in sorted({few, half}) if 0 < n < depth], 'all']


def backbone_depth(training: TrainingConfig) -> int:
  """Layers of the model's backbone, counted as `set_fine_tune_layers` counts them.

  Built without weights (the depth does not depend on them, and nothing is downloaded) at the
  model's default size.
  """
  from modules import models  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  spec = _spec(training.model)
  model = models.build_model(training.model, spec.default_image_size, 2, weights=None,
                             alpha=training.alpha)
  try:
    return models.backbone_depth(model)
  finally:
    keras.backend.clear_session()


def fine_tune_values(base: PipelineConfig) -> List[str]:
  if not _spec(base.training.model).transfer:
    raise UserError(f'study fine_tune_layers: --model {base.training.model} has no pretrained '
                    f'backbone to fine-tune; pass a transfer model, e.g. --model '
                    f'{DEFAULT_TRANSFER_MODEL}')
  return fine_tune_values_for_depth(backbone_depth(base.training))


# -- learning_rate, optimizer

LEARNING_RATE_FACTORS = (0.1, 0.3, 1, 3)


def learning_rate_values(base: PipelineConfig) -> List[str]:
  """The base learning rate (--learning-rate, else the model's own) times 0.1, 0.3, 1 and 3:
  the usual half-decade steps around a rate known to work."""
  rate = _training_defaults(base.training).learning_rate
  return [number(rate * factor) for factor in LEARNING_RATE_FACTORS]


OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop', 'muon')
# Each optimizer's peak learning rate unless it is the model's own (then the model's rate: SGD at
# 0.1 for the resnet and airbench, docs/results.md). Adam, AdamW and RMSprop: Keras' defaults,
# 1e-3. SGD with Nesterov momentum: 0.01 for the others: 0.1 overshoots a transfer head, and the
# models without BatchNorm (simple_cnn) are not made for it. Muon takes SGD steps for everything
# but the convolution kernels, so it takes SGD's rate.
OPTIMIZER_LEARNING_RATES = {'adam': 1e-3, 'adamw': 1e-3, 'sgd': 1e-2, 'rmsprop': 1e-3,
                            'muon': 1e-2}
_SGD_RATED = ('sgd', 'muon')
# Keras 3 decays weights the same way in every optimizer (w -= lr * weight_decay * w), so Adam
# with the base's weight decay already is AdamW. What makes AdamW a different recipe is its
# strength: with Adam's small learning rate it takes ~100x the SGD-style 5e-4 (README, --weight-decay).
ADAMW_WEIGHT_DECAY_FACTOR = 100


def optimizer_variants(optimizer: str, base: PipelineConfig) -> List[Variant]:
  spec = _spec(base.training.model)
  own = optimizer == spec.optimizer or (optimizer in _SGD_RATED and spec.optimizer in _SGD_RATED)
  rate = spec.learning_rate if own else OPTIMIZER_LEARNING_RATES.get(optimizer)
  if rate is None:
    raise UserError(f'study optimizer: unknown optimizer {optimizer!r}; use '
                    f'{", ".join(OPTIMIZERS)}')
  settings = {'optimizer': optimizer, 'learning_rate': number(rate)}
  if optimizer == 'adamw':
    settings['weight_decay'] = number(base.training.weight_decay * ADAMW_WEIGHT_DECAY_FACTOR)
  return [_variant(**settings)]


# -- image_size

SCRATCH_IMAGE_SIZES = (32, 64, 96)
TRANSFER_IMAGE_SIZES = SCRATCH_IMAGE_SIZES + (128, 160, 224)


def image_size_values(base: PipelineConfig) -> List[str]:
  """Every model at 32 (the stored size), 64 and 96 px; transfer models also at 128, 160 and
  224 px, the sizes their ImageNet weights were trained at."""
  sizes = TRANSFER_IMAGE_SIZES if _spec(base.training.model).transfer else SCRATCH_IMAGE_SIZES
  return [str(s) for s in sizes]


def num_classes_values(base: PipelineConfig) -> List[str]:
  if base.data.classes:
    raise UserError('study num_classes: --classes fixes the classes; drop it (the classes then '
                    'come from --class-table or the --team-seed rule)')
  from base.configs import COURSE_CLASS_COUNTS  # pylint: disable=g-import-not-at-top
  return [str(n) for n in COURSE_CLASS_COUNTS]


def _one_flag(dest: str) -> Callable[[str, PipelineConfig], List[Variant]]:
  return lambda value, base: [Variant(((dest, value),))]


@dataclasses.dataclass(frozen=True)
class Study:
  """A named study: what it asks, its default values (from the base config), and the variants of
  one value (most set one flag; a transfer model gives two)."""
  question: str
  values: Callable[[PipelineConfig], List[str]]
  variants: Callable[[str, PipelineConfig], List[Variant]]
  values_mean: str  # what --values lists


STUDIES: Dict[str, Study] = {
    'transfer_vs_scratch': Study(
        'models trained from scratch against a transfer model, frozen and fine-tuned',
        transfer_values, transfer_variants, 'model names'),
    'augmentation': Study('training-time augmentation',
                          lambda base: ['none', 'basic', 'strong'], _one_flag('augment'),
                          '--augment levels'),
    'fine_tune_layers': Study('how many backbone layers to fine-tune', fine_tune_values,
                              _one_flag('fine_tune_layers'), '--fine-tune-layers values'),
    'num_classes': Study('the number of classes', num_classes_values, _one_flag('num_classes'),
                         'class counts'),
    'learning_rate': Study('the peak learning rate', learning_rate_values,
                           _one_flag('learning_rate'), 'learning rates'),
    'optimizer': Study('the optimizer, each at its own learning rate',
                       lambda base: list(OPTIMIZERS), optimizer_variants, 'optimizer names'),
    'batch_size': Study('the batch size (same learning rate)',
                        lambda base: ['32', '64', '128', '256'], _one_flag('batch_size'),
                        'batch sizes'),
    'image_size': Study('the image size the model sees', image_size_values,
                        _one_flag('image_size'), 'image sizes'),
}


def _csv_values(text: str, what: str) -> List[str]:
  values = [v.strip() for v in text.split(',')]
  if not values or any(not v for v in values):
    raise UserError(f'{what} {text!r}: expected comma-separated values, e.g. a,b,c')
  return values


def runner_parser() -> argparse.ArgumentParser:
  """local_runner.py's parser: the pipeline's flags and its console's."""
  parser = cli.build_parser('local_runner.py')
  cli.add_console_flags(parser)
  return parser


def runner_flags() -> Dict[str, argparse.Action]:
  """local_runner.py's flags by dest."""
  return {a.dest: a for a in runner_parser()._actions  # pylint: disable=protected-access
          if a.option_strings and a.dest != 'help'}


def variable_flags() -> Dict[str, argparse.Action]:
  """The local_runner flags a variant may set, by dest: those that take a value, except where
  and as what the runs are recorded."""
  return {dest: a for dest, a in runner_flags().items()
          if a.nargs != 0 and dest not in _NOT_VARIABLE}


def parse_vary(text: str, flags: Dict[str, argparse.Action]) -> Tuple[str, List[str]]:
  """'batch-size=32,64' (or batch_size=, --batch-size=) -> ('batch_size', ['32', '64'])."""
  key, sep, values = text.partition('=')
  if not sep:
    raise UserError(f'--vary {text}: expected FLAG=V1,V2,... e.g. --vary augment=none,strong')
  key = key.strip().lstrip('-')
  by_option = {o.lstrip('-'): dest for dest, a in flags.items() for o in a.option_strings}
  dest = key.replace('-', '_') if key.replace('-', '_') in flags else by_option.get(key)
  if dest is None:
    refused = key.replace('-', '_')
    if refused in _NOT_VARIABLE:
      raise UserError(f'--vary {key}: a study cannot vary it (every run of a study shares its '
                      'output dir and pipeline; seeds come from --seeds)')
    raise UserError(f'--vary {key}: not a local_runner.py flag that takes a value')
  return dest, _csv_values(values, f'--vary {key}=')


def expand(name: str, base: PipelineConfig, values: Optional[str] = None,
           vary: Sequence[Tuple[str, List[str]]] = ()) -> List[Variant]:
  """The variants of a study, in run order.

  Args:
    name: a key of `STUDIES`, or the name of a custom study made by `vary`.
    base: the config every variant shares (parsed from the flags, not resolved).
    values: `--values`: a named study's values instead of its defaults (comma-separated).
    vary: `--vary` as (flag dest, values); several give their grid (product), in flag order.

  Raises:
    UserError: an unknown study, a name that is not a plain word, --values with --vary, a named
      study's name for a custom one, or the same variant twice.
  """
  if not _NAME.match(name):
    raise UserError(f'study name {name!r}: use letters, digits, _ . - (it names runs in ML '
                    'Metadata and files of the report)')
  if vary:
    if name in STUDIES:
      raise UserError(f'--vary makes a custom study: give it its own name, not the named study '
                      f'{name!r}')
    if values is not None:
      raise UserError('--values belongs to a named study; a custom study lists its values in '
                      '--vary FLAG=V1,V2,...')
    dests = [dest for dest, _ in vary]
    repeated = sorted({d for d in dests if dests.count(d) > 1})
    if repeated:
      raise UserError(f'--vary {repeated[0]} is given twice; list all its values in one --vary')
    variants = [Variant(tuple(zip(dests, point)))
                for point in itertools.product(*[vals for _, vals in vary])]
  else:
    if name not in STUDIES:
      raise UserError(f'unknown study {name!r}; named studies: {", ".join(STUDIES)} (or make a '
                      'custom study with --vary FLAG=V1,V2,...)')
    study = STUDIES[name]
    chosen = _csv_values(values, '--values') if values is not None else study.values(base)
    variants = [v for value in chosen for v in study.variants(value, base)]
  labels = [v.label for v in variants]
  twice = [label for label in labels if labels.count(label) > 1]
  if twice:
    raise UserError(f'study {name}: variant {twice[0]} is listed twice')
  return variants


def seeds_of(base_seed: int, count: int) -> List[int]:
  """`--seeds K`: the base --seed and the K - 1 seeds after it."""
  if count < 1:
    raise UserError(f'--seeds {count}: must be 1 or more')
  return [base_seed + i for i in range(count)]


# ---------------------------------------------------------------- command lines -------------

def _flag_text(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return ','.join(str(v) for v in value)
  return str(value)


def base_argv(args: argparse.Namespace) -> List[str]:
  """The local_runner flags the user set (values differing from their defaults), rebuilt from the
  parsed flags: the base every variant's command line starts with. (Rebuilt rather than copied
  from the command line, so the study's own arguments never leak into a run's.)"""
  argv = []
  for dest, action in runner_flags().items():
    if dest in ('study', 'variant', 'seed'):
      continue
    value = getattr(args, dest, action.default)
    if value == action.default and dest not in cli.given_flags(args):
      continue  # (a given --epochs 45 still counts: it turns the time budget off)
    option = action.option_strings[0]
    argv += [option] if action.nargs == 0 else [option, _flag_text(value)]
  return argv


def run_argv(base: Sequence[str], variant: Variant, study: str, seed: int,
             flags: Dict[str, argparse.Action]) -> List[str]:
  """local_runner.py's flags for one run: the base, the variant's values (last: argparse keeps the
  last of a repeated flag, so the variant wins over the base), the study's own, the tag."""
  argv = list(base)
  for dest, value in variant.values().items():
    argv += [flags[dest].option_strings[0], value]
  return argv + list(STUDY_RUN_FLAGS) + ['--study', study, '--variant', variant.label,
                                         '--seed', str(seed)]


def _raising_parser() -> argparse.ArgumentParser:
  """local_runner's parser, raising UserError instead of printing usage and exiting."""
  parser = runner_parser()

  def error(message):
    raise UserError(message)

  parser.error = error
  return parser


def parse_run(argv: Sequence[str]) -> PipelineConfig:
  """A run's config exactly as local_runner.py will parse its command line."""
  return cli.config_from_args(_raising_parser().parse_args(list(argv)))


# ---------------------------------------------------------------- the plan ------------------

@dataclasses.dataclass
class PlannedRun:
  """One run of the study: what it is, its command line and config, and how it went."""
  variant: Variant
  seed: int
  argv: List[str]
  config: Optional[PipelineConfig] = None  # resolved, after `check_variants`
  train_examples: Optional[int] = None
  state: str = 'TO RUN'  # TO RUN, DONE (earlier), COMPLETE, FAILED; COMPILED, SUBMITTED (vertex)
  test_accuracy: Optional[float] = None
  seconds: Optional[float] = None
  component: Optional[str] = None  # where it failed
  reason: str = ''  # why it failed, one line
  pipeline_file: Optional[str] = None  # --runner vertex: its compiled pipeline job
  job: Optional[str] = None  # --runner vertex --submit: the submitted job's resource name


def check_variants(runs: Sequence[PlannedRun]) -> None:
  """Every variant's config, checked before the first run starts, as local_runner.py checks it:
  the flags (argparse), the data (found, classes picked: once per distinct data config) and the
  model, training, tuning and evaluation settings (`check_config`, which builds each model once).
  Fills each run's resolved config and train split size.

  Raises:
    UserError: the first variant that local_runner.py would refuse, named.
  """
  from pipeline.data import resolve_data  # pylint: disable=g-import-not-at-top
  parsed = []
  for run in runs:
    try:
      parsed.append(parse_run(run.argv))
    except UserError as e:
      raise UserError(f'variant {run.variant.label}: {e}') from e
  data_cache: Dict[DataConfig, Tuple[DataConfig, Dict[str, int]]] = {}
  checked: Dict[str, PipelineConfig] = {}
  from pipeline.pipeline import check_config  # pylint: disable=g-import-not-at-top
  from base.constants import TRAIN_SPLIT  # pylint: disable=g-import-not-at-top
  for run, config in zip(runs, parsed):
    try:
      if config.data not in data_cache:
        data_cache[config.data] = resolve_data(config.data)
      data, sizes = data_cache[config.data]
      config = config.replace(data=data)
      # Seeds change nothing that can be refused: check each variant once.
      if run.variant.label not in checked:
        checked[run.variant.label] = check_config(config)
      run.config = config.replace(tuning=checked[run.variant.label].tuning)
      run.train_examples = sizes[TRAIN_SPLIT]
    except UserError as e:
      raise UserError(f'variant {run.variant.label}: {e}') from e


def completed(records: Iterable[Dict[str, Any]], pipeline: str,
              study: str) -> Dict[Tuple[str, int], Dict[str, Any]]:
  """(variant, seed) -> the newest done run of the study in this pipeline (`pipeline.runs`
  records, oldest first)."""
  done = {}
  for record in records:
    if (record.get('pipeline') == pipeline and record.get('study') == study and
        record.get('state') in DONE_STATES and record.get('seed') is not None):
      done[(record.get('variant'), int(record['seed']))] = record
  return done


def setting_changes(recorded: Dict[str, Any], planned: TrainingConfig) -> List[str]:
  """The training settings in which a done run (its Trainer's recorded config) differs from the
  run planned now: 'epochs 3 -> 10'. A study started again with other base flags must not count
  runs of the old base as done, or its variants would compare different experiments."""
  now = dataclasses.asdict(planned)
  return [f'{key} {recorded.get(key)} -> {value}' for key, value in now.items()
          if recorded.get(key) != value]


def mark_done(runs: Sequence[PlannedRun], done: Dict[Tuple[str, int], Dict[str, Any]]
              ) -> List[str]:
  """Marks the runs already done with the same training settings DONE (with their accuracy and
  time); returns a note for each done run whose settings changed, which runs again."""
  notes = []
  for run in runs:
    record = done.get((run.variant.label, run.seed))
    if record is None:
      continue
    changes = setting_changes(record.get('training') or {}, run.config.training)
    if changes:
      notes.append(f'{run.variant.label} seed {run.seed}: done in run {record.get("run_id")} '
                   f'with other settings ({", ".join(changes)}): runs again')
      continue
    run.state, run.test_accuracy = 'DONE', record.get('test_accuracy')
    run.seconds = record.get('duration_sec')
  return notes


# ---------------------------------------------------------------- time estimates ------------

def _trains_backbone(training: Dict[str, Any]) -> bool:
  """Whether layers below the head train: always for a from-scratch model (whatever its
  --fine-tune-layers says), for a transfer model unless --fine-tune-layers is 0."""
  return not _spec(training['model']).transfer or str(training.get('fine_tune_layers')) != '0'


def step_key(training: Dict[str, Any], image_size: int) -> Tuple[Any, ...]:
  """What a step's time depends on: the model and the size it sees, the batch, the precision
  (as configured: `auto` resolves the same way on one machine) and whether backbone layers train
  (a frozen backbone needs no backward pass; from-scratch models always train every layer)."""
  return (training['model'], int(image_size), int(training['batch_size']),
          training.get('precision'), _trains_backbone(training))


def measured_step_times(stats: Iterable[Dict[str, Any]], cpu_model: str,
                        cpu_cores: Optional[int]) -> Dict[Tuple[Any, ...], List[float]]:
  """step_key -> steady-state ms/step of earlier runs on this machine (their training_stats.json:
  same CPU model and core count), from the runs' Trainers."""
  times = collections.defaultdict(list)
  for s in stats:
    training = s.get('training_config') or {}
    if (not s.get('ms_per_step') or s.get('cpu_model') != cpu_model or
        s.get('cpu_cores') != cpu_cores or not training or s.get('image_size') is None):
      continue
    times[step_key(training, s['image_size'])].append(float(s['ms_per_step']))
  return dict(times)


def training_steps(training: TrainingConfig, transfer: bool, train_examples: int) -> int:
  """Steps a config trains for: (head epochs, when a transfer model fine-tunes, + epochs) x steps
  per epoch (--steps-per-epoch, else one pass over the train split)."""
  per_epoch = training.steps_per_epoch or math.ceil(train_examples / training.batch_size)
  head = training.head_epochs if transfer and training.fine_tune_layers != '0' else 0
  return (head + training.epochs) * per_epoch


def estimate(run: PlannedRun, measured: Dict[Tuple[Any, ...], List[float]]
             ) -> Tuple[Optional[float], str]:
  """(seconds, how) of a run's training from the measured step times; (None, why) when nothing
  comparable was measured on this machine."""
  from modules import trainer as trainer_module  # pylint: disable=g-import-not-at-top
  training = trainer_module.with_model_defaults(run.config.training)
  transfer = _spec(training.model).transfer
  image_size = trainer_module.image_size_of(training)
  times = measured.get(step_key(dataclasses.asdict(training), image_size))
  steps = training_steps(training, transfer, run.train_examples)
  if not times:
    return None, f'unknown: no {training.model} run at {image_size} px, batch ' \
                 f'{training.batch_size} measured here yet'
  ms = sum(times) / len(times)
  return steps * ms / 1000, f'{steps:,} steps x {ms:.0f} ms/step ({len(times)} run(s))'


# ---------------------------------------------------------------- running -------------------

_ERROR_LINE = re.compile(r'^([A-Za-z_][\w.]*)?(Error|Exception|Exit)\b[^:]*: .+$')
# local_runner's console line for a failed component (pipeline.console.end_line).
_FAILED_LINE = re.compile(r'^(?P<component>\S+) failed: (?P<reason>.+)$')


def failure_reason(lines: Sequence[str]) -> Tuple[Optional[str], str]:
  """(component, reason) of a failed run, from its output: local_runner's `error: ...` line
  (bad input), else its `<component> failed: <reason>` line, else the last exception line of a
  traceback, else the last line."""
  stripped = [l.strip() for l in lines if l.strip()]
  for line in reversed(stripped):
    if line.startswith('error: '):
      return None, line[len('error: '):]
  for line in reversed(stripped):
    match = _FAILED_LINE.match(line)
    if match:
      return match.group('component'), match.group('reason')
  for line in reversed(stripped):
    if _ERROR_LINE.match(line):
      return None, line
  return None, stripped[-1] if stripped else 'no output'


def _store_records(output_dir: str) -> List[Dict[str, Any]]:
  """`pipeline.runs.list_runs` of the output dir; no runs when there is no store yet."""
  if not os.path.isfile(RunnerConfig(output_dir=output_dir).metadata_path):
    return []
  from pipeline import runs  # pylint: disable=g-import-not-at-top
  return runs.list_runs(runs.open_store(output_dir), runs.read_ledger(output_dir))


def _started_at(record: Dict[str, Any]) -> float:
  return datetime.datetime.fromisoformat(record['started']).timestamp()


def _run_once(run: PlannedRun, study: str, output_dir: str) -> None:
  """Runs one variant as its own local_runner.py process, streaming its output; then reads its
  run back from ML Metadata.

  A process per run isolates a failure (a crash, an out-of-memory kill) from the study, and keeps
  step times honest: several models trained in one process run slower (../shared/DESIGN.md).
  """
  command = [sys.executable, LOCAL_RUNNER, *run.argv]
  print(f'\n=== {study}: {run.variant.label}, seed {run.seed} ===\n$ '
        + ' '.join(command[1:]), flush=True)
  from pipeline import runs  # pylint: disable=g-import-not-at-top
  tail = collections.deque(maxlen=400)
  started = time.time()
  # In the output dir's study ledger before the run starts and again when it ended, so that the
  # run stays attributable to this variant and seed even if it fails before its Trainer (which
  # records the study tag in ML Metadata): `runs.attribute_runs`.
  entry = {'pipeline': run.config.runner.pipeline_name, 'study': study,
           'variant': run.variant.label, 'seed': run.seed, 'started': started}
  runs.append_ledger(output_dir, entry)
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  try:
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, env=env) as process:
      try:
        for line in process.stdout:
          sys.stdout.write(line)
          tail.append(line)
        code = process.wait()
      except KeyboardInterrupt:
        process.wait()  # the child got the same SIGINT: let it stop and record its state
        raise
  finally:
    runs.append_ledger(output_dir, {**entry, 'ended': time.time()})
  run.seconds = time.time() - started
  sys.stdout.flush()
  # The newest run of the pipeline started since this process did.
  mine = [r for r in _store_records(output_dir)
          if r.get('pipeline') == run.config.runner.pipeline_name and
          _started_at(r) >= started - 1]
  record = mine[-1] if mine else {}
  run.test_accuracy = record.get('test_accuracy')
  if code == 0 and record.get('state') in DONE_STATES:
    run.state = 'COMPLETE'
    return
  run.state = 'FAILED'
  component, reason = failure_reason(list(tail))
  failed = record.get('failed') or []
  run.component = failed[0] if failed else component
  if code == 0:  # cannot happen with local_runner; said rather than hidden
    reason = f'the run ended {record.get("state", "without a run in ML Metadata")}'
  run.reason = reason


def _kubeflow_argv(run_argv: Sequence[str]) -> List[str]:
  """A run's local_runner flags as kubeflow_runner.py takes them: without the local console's."""
  console_parser = argparse.ArgumentParser(add_help=False)
  cli.add_console_flags(console_parser)
  console_only = {o for a in console_parser._actions for o in a.option_strings}  # pylint: disable=protected-access
  return [a for a in run_argv if a not in console_only]


def _compile_once(run: PlannedRun, study: str, cloud_argv: Sequence[str]) -> None:
  """Compiles one run as a Vertex AI pipeline job with kubeflow_runner.py, in its own process
  as local runs are (TensorFlow's chatter stays in that process's stderr, shown on failure)."""
  command = [sys.executable, KUBEFLOW_RUNNER, *_kubeflow_argv(run.argv), *cloud_argv,
             '--output-file', run.pipeline_file]
  print(f'\n=== {study}: {run.variant.label}, seed {run.seed}: compiling ===\n$ '
        + ' '.join(command[1:]), flush=True)
  started = time.time()
  result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          check=False)
  run.seconds = time.time() - started
  sys.stdout.write(result.stdout)
  if result.returncode == 0 and os.path.isfile(run.pipeline_file):
    run.state = 'COMPILED'
    return
  run.state = 'FAILED'
  run.component, run.reason = failure_reason((result.stdout + result.stderr).splitlines())


def run_on_vertex(runs: Sequence[PlannedRun], args: argparse.Namespace) -> None:
  """`--runner vertex`: every run compiled into its own pipeline job; with --submit, submitted
  once all have compiled (none when one fails), so the jobs run at the same time on Vertex AI."""
  cloud = vertex.config_from_args(args)
  for run in runs:
    run.pipeline_file = vertex_file(args.output_file, args.name, run)
  print(f'study {args.name}: {len(runs)} run(s) as Vertex AI pipeline jobs; '
        + ('submitted together once all have compiled' if cloud.submit else
           'compiled only (--submit submits them)'), flush=True)
  if args.dry_run:
    print('\n'.join(f'{r.variant.label}, seed {r.seed}: {r.pipeline_file}' for r in runs))
    return
  cloud_argv = vertex_argv(args)
  try:
    for run in runs:
      _compile_once(run, args.name, cloud_argv)
    if cloud.submit and all(run.state == 'COMPILED' for run in runs):
      vertex.check_credentials()
      for run in runs:
        run.job = vertex.submit(cloud, run.config, run.pipeline_file)
        run.state = 'SUBMITTED'
  finally:
    print(f'\nstudy {args.name}:\n{summary_table(runs)}', flush=True)


def _format_table(headers, rows) -> str:
  from pipeline.inspect import format_table  # pylint: disable=g-import-not-at-top
  return format_table(headers, rows)


def _duration(seconds: Optional[float]) -> str:
  from pipeline.inspect import format_duration  # pylint: disable=g-import-not-at-top
  return format_duration(seconds)


def _accuracy(value: Optional[float]) -> Optional[str]:
  return None if value is None else f'{value:.1%}'


def summary_table(runs: Sequence[PlannedRun]) -> str:
  """The final table: variant, seed, state, test accuracy, time, and why a run failed."""
  rows = []
  for run in runs:
    why = f'{run.component or "before any component"}: {run.reason}' if run.state == 'FAILED' \
        else run.job or run.pipeline_file or ''
    rows.append([run.variant.label, run.seed, run.state, _accuracy(run.test_accuracy),
                 _duration(run.seconds), why])
  return _format_table(['variant', 'seed', 'state', 'test accuracy', 'time', ''], rows)


# ---------------------------------------------------------------- command line --------------

def build_parser() -> argparse.ArgumentParser:
  parser = cli.build_parser(
      'Run a study: the variants of one setting (or a grid of them), each as a pipeline run '
      'in the same ML Metadata store, tagged with its study, variant and seed.')
  cli.add_console_flags(parser)
  parser.prog = 'python -m pipeline.study'
  parser.allow_abbrev = False  # a study flag's prefix must not swallow a local_runner flag
  for action in parser._actions:  # pylint: disable=protected-access
    if action.dest in ('study', 'variant'):
      action.help = argparse.SUPPRESS  # the study sets them for each run
  g = parser.add_argument_group('study')
  g.add_argument('name', metavar='NAME',
                 help='a named study (' + ', '.join(STUDIES) + '), or with --vary the name of '
                 'a custom study')
  g.add_argument('--values', metavar='V1,V2,...',
                 help="a named study's values instead of its defaults: " + '; '.join(
                     f'{n}: {s.values_mean}' for n, s in STUDIES.items()))
  g.add_argument('--vary', action='append', default=[], metavar='FLAG=V1,V2,...',
                 help='a custom study of any value flag above, e.g. --vary augment=none,strong; '
                 'two --vary give the grid')
  g.add_argument('--seeds', type=int, default=1, metavar='K',
                 help='run every variant with K seeds: --seed and the K-1 after it '
                 '(default %(default)s)')
  g.add_argument('--dry-run', action='store_true',
                 help='print the runs, which are done, and the remaining training time measured '
                 'from earlier runs on this machine; run nothing')
  g.add_argument('--runner', choices=RUNNERS, default='local',
                 help='local: run each variant here with local_runner.py, one after another; '
                 'vertex: compile each run as a Vertex AI pipeline job (kubeflow_runner.py, with '
                 'the flags below; --output-file names the first part of each file) and with '
                 '--submit submit them all at once, so the study takes the time of its slowest '
                 'run (default %(default)s)')
  vertex.add_flags(parser, image_required=False)
  return parser


def vertex_argv(args: argparse.Namespace) -> List[str]:
  """kubeflow_runner's Vertex/Dataflow flags the user set, which every run's compile gets
  (--output-file and --submit stay the study's: a file per run, submitted together)."""
  parser = argparse.ArgumentParser(add_help=False)
  vertex.add_flags(parser, image_required=False)
  argv = []
  for action in parser._actions:  # pylint: disable=protected-access
    value = getattr(args, action.dest, action.default)
    if action.dest in ('output_file', 'submit') or value == action.default:
      continue
    argv += [action.option_strings[0], _flag_text(value)]
  return argv


def check_runner(args: argparse.Namespace, base: PipelineConfig) -> Optional[vertex.CloudConfig]:
  """The Vertex AI settings of a `--runner vertex` study, checked as kubeflow_runner.py checks
  them; None for a local study, which must not be given them."""
  if args.runner == 'local':
    given = vertex_argv(args) + (['--submit'] if args.submit else [])
    if given:
      raise UserError(f'{given[0]} is a --runner vertex flag (a local study runs here)')
    return None
  if not args.image:
    raise UserError('--runner vertex needs --image (the pipeline image: make image IMAGE=URI)')
  cloud = vertex.config_from_args(args)
  vertex.check(cloud, base)
  return cloud


def vertex_file(output_file: str, study: str, run: 'PlannedRun') -> str:
  """Where one run's compiled pipeline goes: --output-file's name, then study, variant, seed."""
  stem, ext = os.path.splitext(output_file)
  label = re.sub(r'[^A-Za-z0-9._-]+', '_', run.variant.label)
  return f'{stem}-{study}-{label}-seed{run.seed}{ext or ".json"}'


def plan(args: argparse.Namespace) -> List[PlannedRun]:
  """Every run of the study, checked, with the ones already done in the store marked DONE."""
  if args.study or args.variant:
    raise UserError('--study and --variant are set by pipeline.study for each run; name the '
                    'study with NAME')
  base = cli.config_from_args(args)
  flags = variable_flags()
  vary = [parse_vary(text, flags) for text in args.vary]
  variants = expand(args.name, base, args.values, vary)
  seeds = seeds_of(base.training.seed, args.seeds)
  start = base_argv(args)
  runs = [PlannedRun(v, s, run_argv(start, v, args.name, s, flags))
          for v in variants for s in seeds]
  on_vertex = check_runner(args, base) is not None
  # (on Vertex AI the store and the output dir are the cloud's: the log goes beside the files)
  log_dir = os.path.dirname(os.path.abspath(args.output_file)) if on_vertex else \
      base.runner.output_dir
  cli.check_writable_dir(log_dir)
  # TensorFlow's and TFX's import chatter goes to a log file, as in local_runner.py.
  log = os.path.join(log_dir, console.LOG_DIR,
                     f'study-{args.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}.log')
  print(f'study {args.name}: checking {len(variants)} variant(s) before the first run '
        f'(log: {os.path.abspath(log)})', flush=True)
  with console.Console(log, verbose=args.verbose):
    check_variants(runs)
  if on_vertex:
    return runs
  done = completed(_store_records(base.runner.output_dir), base.runner.pipeline_name, args.name)
  for note in mark_done(runs, done):
    print(f'note: {note}', flush=True)
  return runs


def _stats_of_trained_runs(output_dir: str) -> List[Dict[str, Any]]:
  """training_stats.json of every run in the store whose Trainer trained (not cached: a cached
  Trainer points at another run's stats); unreadable ones are skipped."""
  stats = []
  for record in _store_records(output_dir):
    trained = any(e.get('component') == constants.TRAINER and e.get('state') == 'COMPLETE'
                  for e in record.get('executions', []))
    if not trained or not record.get('training_stats_path'):
      continue
    try:
      with open(record['training_stats_path']) as f:
        stats.append(json.load(f))
    except (OSError, ValueError):
      continue
  return stats


def remaining_time(estimates: Sequence[Tuple[Optional[float], str]]) -> str:
  """One line: the summed training time of the runs to do, and how many could not be estimated."""
  if not estimates:
    return 'nothing left to run'
  known = [seconds for seconds, _ in estimates if seconds is not None]
  unknown = len(estimates) - len(known)
  if not known:
    return f'remaining training time: unknown ({unknown} run(s) with no comparable measurement)'
  text = f'remaining training time: {_duration(sum(known))} for {len(known)} run(s)'
  if unknown:
    text += f', unknown for {unknown} more'
  return text + ' (training only; each run adds ~1 min of start-up and other components)'


def dry_run(runs: Sequence[PlannedRun], output_dir: str) -> str:
  """The runs, which are done, and each remaining run's estimated training time."""
  measured = measured_step_times(_stats_of_trained_runs(output_dir), machine.cpu_model(),
                                 os.cpu_count())
  rows, estimates = [], []
  for run in runs:
    if run.state == 'DONE':
      rows.append([run.variant.label, run.seed, 'done', _accuracy(run.test_accuracy), ''])
      continue
    seconds, how = estimate(run, measured)
    estimates.append((seconds, how))
    rows.append([run.variant.label, run.seed, 'to run', None,
                 how if seconds is None else f'{_duration(seconds)}: {how}'])
  return '\n'.join([
      _format_table(['variant', 'seed', 'state', 'test accuracy', 'estimated training time'],
                    rows),
      remaining_time(estimates)])


def plan_line(name: str, runs: Sequence[PlannedRun], output_dir: str) -> str:
  variants = len({run.variant.label for run in runs})
  seeds = len({run.seed for run in runs})
  done = sum(run.state == 'DONE' for run in runs)
  return (f'study {name}: {variants} variant(s) x {seeds} seed(s) = {len(runs)} runs; '
          f'{done} already done, {len(runs) - done} to run; ML Metadata in '
          f'{os.path.abspath(RunnerConfig(output_dir=output_dir).metadata_path)}')


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = build_parser()
  args = parser.parse_args(argv)
  runs = plan(args)
  if args.runner == 'vertex':
    run_on_vertex(runs, args)
    _exit_if_failed(runs, 'compile')
    return
  output_dir = args.output_dir
  print(plan_line(args.name, runs, output_dir), flush=True)
  if args.dry_run:
    print(dry_run(runs, output_dir))
    return
  try:
    for run in runs:
      if run.state != 'DONE':
        _run_once(run, args.name, output_dir)
  finally:
    print(f'\nstudy {args.name}:\n{summary_table(runs)}', flush=True)
  _exit_if_failed(runs, 'run')


def _exit_if_failed(runs: Sequence[PlannedRun], what: str) -> None:
  failed = [run for run in runs if run.state == 'FAILED']
  if failed:
    again = ('run the same command again to retry only them' if what == 'run' else
             'nothing was submitted; fix it and run the same command again')
    print(f'{len(failed)} of {len(runs)} runs failed to {what}; {again}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  cli.run_main(main, sys.argv[1:])
