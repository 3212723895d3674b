"""Command-line flags -> `PipelineConfig`, shared by both runners; and the error-reporting wrapper."""
import argparse
import dataclasses
import os
import sys
import tempfile
from typing import Callable, Optional, Sequence

from base.configs import (DataConfig, EvaluationConfig, PipelineConfig, RunnerConfig,
                          StudyTag, TrainingConfig, TuningConfig)
from base.errors import UserError, os_error_message, user_error_message


def _csv(value: str):
  return tuple(v.strip() for v in value.split(',') if v.strip())


def add_data_flags(parser: argparse.ArgumentParser) -> None:
  d = DataConfig()
  g = parser.add_argument_group('data and classes')
  g.add_argument('--data', default=d.data, metavar='PATH',
                 help='cifar-100-python.tar.gz, its extracted cifar-100-python/ folder, or an image '
                 'folder PATH/train/<class>/*.png|jpg (+ optional PATH/test/<class>/*). Default: '
                 "Keras' cache ~/.keras/datasets/ (downloaded when absent)")
  g.add_argument('--trust-data', action='store_true',
                 help='accept an archive whose MD5 is not the official CIFAR-100 one')
  g.add_argument('--team-seed', type=int, default=d.team_seed,
                 help='team number: row of the class table, seed of the class rule and of the '
                 'eval split (default %(default)s)')
  g.add_argument('--num-classes', type=int, default=d.num_classes,
                 help='number of classes: 20/40/60/80 for the course (default 20 for CIFAR-100, '
                 'all classes of an image folder)')
  g.add_argument('--class-table', default=d.class_table, metavar='CSV_OR_URL',
                 help='course class table: row = team seed, N fine-label ids')
  g.add_argument('--classes', type=_csv, default=d.classes, metavar='A,B,...',
                 help='explicit classes (names or ids); overrides the table and the rule')
  g.add_argument('--eval-fraction', type=float, default=d.eval_fraction,
                 help='share of each class\'s training images held out as the eval split '
                 '(default %(default)s)')
  g.add_argument('--test-fraction', type=float, default=d.test_fraction,
                 help='image folders without test/: share of each class (its last files) used '
                 'as the test split (default %(default)s)')
  g.add_argument('--beam-workers', type=int, default=d.beam_workers,
                 help='Beam DirectRunner workers; 0 runs in-process (default %(default)s)')


def _fine_tune_layers(value: str) -> str:
  if value != 'all' and not value.isdigit():
    raise argparse.ArgumentTypeError(f"expected 0, a number of top layers, or 'all'; got {value!r}")
  return value


# Namespace attribute: the dests of the flags given on the command line (`_Given` notes them).
_GIVEN = 'given_flags'


class _Given(argparse.Action):
  """Stores the value and notes that the flag was given: --epochs and --time-budget exclude
  each other only when both are, and a given --epochs turns the default time budget off."""

  def __call__(self, parser, namespace, values, option_string=None):
    setattr(namespace, self.dest, values)
    setattr(namespace, _GIVEN, getattr(namespace, _GIVEN, frozenset()) | {self.dest})


def given_flags(args: argparse.Namespace) -> frozenset:
  """The dests of the `_Given` flags the command line gave (even when equal to the default)."""
  return getattr(args, _GIVEN, frozenset())


def add_training_flags(parser: argparse.ArgumentParser) -> None:
  t = TrainingConfig()
  g = parser.add_argument_group('model and training')
  g.add_argument('--model', default=t.model,
                 help='simple_cnn | resnet | airbench | vgg16 | mobilenet | mobilenet_v2 | '
                 'resnet50 | efficientnet_b0 | densenet121 (default %(default)s)')
  g.add_argument('--image-size', type=int, default=t.image_size,
                 help='side the model sees; images are resized inside the model (default: the '
                 "model's own: 32 from scratch and vgg16, 64-96 for the other transfer models)")
  g.add_argument('--weights', default=t.weights,
                 help='transfer models: imagenet | none | PATH of a no-top .h5 file '
                 '(default %(default)s)')
  g.add_argument('--alpha', type=float, default=t.alpha,
                 help='MobileNet width multiplier (default %(default)s)')
  g.add_argument('--dropout', type=float, default=t.dropout,
                 help="dropout before the classifier (default: the model's own)")
  g.add_argument('--width', type=int, default=t.width,
                 help='resnet: channels of its first stage, doubled at each of the next two '
                 '(a step costs up to (W/32)^2 as much; default: 32); airbench: channels of its '
                 'first stage, 4W in the next two (default: 48)')
  g.add_argument('--fine-tune-layers', type=_fine_tune_layers, default=t.fine_tune_layers,
                 help="transfer models: 0 = frozen backbone, K = its top K layers train, 'all' "
                 "(default: the model's: all for mobilenet, 0 for the other backbones)")
  g.add_argument('--head-epochs', type=int, default=t.head_epochs,
                 help='when fine-tuning: epochs that train the new head alone first '
                 '(default %(default)s)')
  g.add_argument('--fine-tune-learning-rate', type=float, default=t.fine_tune_learning_rate,
                 help='learning rate once backbone layers train (default %(default)s)')
  g.add_argument('--epochs', type=int, default=t.epochs, action=_Given,
                 help='train exactly N epochs (no time budget); without it, the most the time '
                 'budget may choose (default %(default)s)')
  g.add_argument('--time-budget', type=float, default=t.time_budget, action=_Given,
                 metavar='MINUTES',
                 help='training time (head epochs, fine-tuning and validation included) on this '
                 'machine: the epochs, at most the default --epochs, are chosen from the step '
                 'time measured in the first epoch; a given --epochs turns it off; both: an '
                 'error (default %(default)s)')
  g.add_argument('--batch-size', type=int, default=t.batch_size, help='(default %(default)s)')
  g.add_argument('--optimizer', default=t.optimizer,
                 help='adam | adamw | sgd | rmsprop | muon (sgd with orthogonalized steps for '
                 "convolution kernels) (default: the model's: muon for resnet and airbench, "
                 'adam for the others)')
  g.add_argument('--learning-rate', type=float, default=t.learning_rate,
                 help="peak learning rate (default: the model's: 0.1 for resnet and airbench, "
                 '0.001 for the others)')
  g.add_argument('--momentum', type=float, default=t.momentum,
                 help='sgd momentum, Nesterov (default %(default)s)')
  g.add_argument('--schedule', default=t.schedule,
                 help='constant | cosine (with warmup) | plateau (default %(default)s)')
  g.add_argument('--warmup-epochs', type=float, default=t.warmup_epochs,
                 help='cosine warmup (default %(default)s)')
  g.add_argument('--weight-decay', type=float, default=t.weight_decay,
                 help='decoupled weight decay (default %(default)s)')
  g.add_argument('--label-smoothing', type=float, default=t.label_smoothing,
                 help='(default %(default)s)')
  g.add_argument('--augment', default=t.augment,
                 help='none | basic (flip, pad-and-crop) | strong (+ rotation, zoom, contrast) '
                 '(default %(default)s)')
  g.add_argument('--cutout', type=int, default=t.cutout, metavar='PIXELS',
                 help='after --augment, set a random PIXELS x PIXELS square of each training '
                 "image to the image's mean colour (cutout); 0 = off (default %(default)s)")
  g.add_argument('--early-stopping-patience', type=int, default=t.early_stopping_patience,
                 help='stop after N epochs without val_accuracy gain and keep the best weights; '
                 '0 = off (default %(default)s)')
  g.add_argument('--precision', default=t.precision,
                 help='auto (mixed_float16 on tensor-core GPUs, mixed_bfloat16 on CPUs with '
                 'native bfloat16, else float32) | float32 | mixed_float16 | mixed_bfloat16 '
                 '(default %(default)s)')
  g.add_argument('--jit', action='store_true', help='XLA compilation (GPUs; slow on CPUs)')
  g.add_argument('--seed', type=int, default=t.seed, help='(default %(default)s)')
  g.add_argument('--steps-per-epoch', type=int, default=t.steps_per_epoch,
                 help='default: one pass over the train split')
  g.add_argument('--tta', default=t.tta,
                 help='test-time augmentation of the exported model: none | flip (average the '
                 'probabilities of each image and its mirror image) | flip_shift (10 views: '
                 'the image and its mirror, each also shifted 1 pixel 4 ways) '
                 '(default %(default)s)')


def add_tuning_flags(parser: argparse.ArgumentParser) -> None:
  t = TuningConfig()
  g = parser.add_argument_group('hyperparameter tuning')
  g.add_argument('--tune', dest='tuner', nargs='?', const='random', default=t.tuner,
                 metavar='TUNER', help='search hyperparameters first: random (the default with '
                 'a bare --tune) | hyperband | bayesian; the Trainer then uses the best values')
  g.add_argument('--tuner-trials', type=int, default=t.tuner_trials,
                 help='trials of random and bayesian search (default %(default)s)')
  g.add_argument('--tuner-epochs', type=int, default=t.tuner_epochs,
                 help='epochs per trial; hyperband: the most a trial gets (default %(default)s)')
  g.add_argument('--hyperparameters', default=t.hyperparameters, metavar='PATH',
                 help="reuse an earlier search's best_hyperparameters.txt (or its folder) "
                 'instead of tuning')


def add_evaluation_flags(parser: argparse.ArgumentParser) -> None:
  e = EvaluationConfig()
  g = parser.add_argument_group('evaluation and blessing')
  g.add_argument('--bless-min-accuracy', dest='min_accuracy', type=float, default=e.min_accuracy,
                 help='bless (and push) only models with test accuracy at or above this '
                 '(default %(default)s)')
  g.add_argument('--no-baseline', dest='compare_to_baseline', action='store_false',
                 help='do not require the model to match the latest blessed model\'s accuracy')


def add_runner_flags(parser: argparse.ArgumentParser) -> None:
  r = RunnerConfig()
  g = parser.add_argument_group('outputs')
  g.add_argument('--output-dir', default=r.output_dir,
                 help='holds metadata.sqlite and pipeline_root/ (default %(default)s)')
  g.add_argument('--pipeline-name', default=r.pipeline_name, help='(default %(default)s)')
  g.add_argument('--no-cache', dest='enable_cache', action='store_false',
                 help='re-run every component even when its inputs did not change')
  s = StudyTag()
  g.add_argument('--study', default=s.study, metavar='NAME',
                 help='record the run as part of this study (pipeline.study sets it)')
  g.add_argument('--variant', default=s.variant, metavar='LABEL',
                 help="the run's variant within --study, e.g. augment=strong")


def add_console_flags(parser: argparse.ArgumentParser) -> None:
  """Flags of a local run's console (pipeline.console)."""
  parser.add_argument('--verbose', action='store_true',
                      help='show everything on the console (TensorFlow, TFX and Beam logs, '
                      'warnings), not only the run\'s progress; it is in the run\'s log file '
                      'under <output-dir>/logs either way')


def build_parser(description: str) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=description)
  add_data_flags(parser)
  add_training_flags(parser)
  add_tuning_flags(parser)
  add_evaluation_flags(parser)
  add_runner_flags(parser)
  return parser


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
  data = DataConfig(
      data=args.data, trust_data=args.trust_data, team_seed=args.team_seed,
      num_classes=args.num_classes, class_table=args.class_table, classes=args.classes,
      eval_fraction=args.eval_fraction, test_fraction=args.test_fraction,
      beam_workers=args.beam_workers)
  training = TrainingConfig(**{
      f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingConfig)})
  given = given_flags(args)
  if {'epochs', 'time_budget'} <= given:
    raise UserError('--epochs and --time-budget exclude each other: --epochs N trains exactly N '
                    'epochs, --time-budget MINUTES chooses the epochs that fit')
  if 'epochs' in given:
    training = dataclasses.replace(training, time_budget=None)
  runner = RunnerConfig(pipeline_name=args.pipeline_name, output_dir=args.output_dir,
                        enable_cache=args.enable_cache)
  tuning = TuningConfig(tuner=args.tuner, tuner_trials=args.tuner_trials,
                        tuner_epochs=args.tuner_epochs, hyperparameters=args.hyperparameters)
  evaluation = EvaluationConfig(min_accuracy=args.min_accuracy,
                                compare_to_baseline=args.compare_to_baseline)
  if args.variant and not args.study:
    raise UserError('--variant needs --study')
  study = StudyTag(study=args.study, variant=args.variant)
  return PipelineConfig(data=data, training=training, tuning=tuning, evaluation=evaluation,
                        runner=runner, study=study)


def check_writable_dir(path: str, flag: str = '--output-dir') -> None:
  """Creates `path` if needed and proves it writable, before any work starts."""
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path):
      pass
  except OSError as e:
    raise UserError(f'{flag} {path}: not writable ({e.strerror})') from e


def run_main(main: Callable[[Optional[Sequence[str]]], None],
             argv: Optional[Sequence[str]] = None) -> None:
  """Runs `main`, turning a UserError, or a disk-full or permission error (`os_error_message`),
  even one wrapped by Beam or TFX, into one line, exit 2."""
  try:
    main(argv)
  except KeyboardInterrupt:
    sys.exit('interrupted')
  except Exception as e:  # pylint: disable=broad-except
    message = user_error_message(e)
    if message is None:
      disk = os_error_message(e)
      if disk is None:
        raise
      message = (f'{disk}; free space or fix the permissions and run again: the components '
                 'that finished are reused from the cache')
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)
