"""What ML Metadata knows about the pipeline's runs: an overview of every run, or one run in full.

    python -m pipeline.inspect [--output-dir DIR] [--json]                  # every run, newest last
    python -m pipeline.inspect [--output-dir DIR] --run latest|RUN_ID [--json]  # one run in full

`list_runs(store)` and `run_details(store, run_id)` return plain, JSON-ready dicts;
`format_runs`/`format_run` turn them into text. One run's details are a list of sections
(`SECTIONS`: classes, training, evaluation, deployment), each built by one function and printed by
one formatter (`FORMATTERS`): a new section (e.g. the Tuner's trials) is one entry in each.

How TFX 1.16 records a run: a `pipeline_run` context (named by the run id) holds the run's
executions, one per node; a cached execution (state CACHED) has OUTPUT events pointing at the
artifacts it reused, so a run's artifacts are its executions' inputs and outputs either way.

`pipeline.analysis` and `pipeline.evaluation` are imported where a run's evaluation is read, not
at the top: they import TFMA (and TensorFlow), 10-20 s that the overview does not need.
"""
import argparse
import dataclasses
import datetime
import json
import logging
import os
import re
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import cli
from base.configs import RunnerConfig
from base import constants
from base.constants import TRAINING_STATS_FILE
from base.errors import UserError

LATEST = 'latest'
PIPELINE_CONTEXT = 'pipeline'
RUN_CONTEXT = 'pipeline_run'
NODE_CONTEXT = 'node'

# Components are recognised by their class (the last part of the execution's type name), so a
# custom component id (`.with_id(...)`) does not hide them.
EXAMPLE_GEN, TRAINER, TUNER, EVALUATOR, PUSHER = (
    constants.EXAMPLE_GEN, constants.TRAINER, constants.TUNER, constants.EVALUATOR,
    constants.PUSHER)
# Nodes that only look artifacts up: COMPLETE even in a run where everything else was cached.
_LOOKUP_NODES = ('Resolver', 'Importer')
# TFX's standard artifact type names (tfx.types.standard_artifacts).
MODEL = 'Model'
TUNER_RESULTS = 'TunerResults'
MODEL_RUN = 'ModelRun'
MODEL_EVALUATION = 'ModelEvaluation'
MODEL_BLESSING = 'ModelBlessing'
PUSHED_MODEL = 'PushedModel'
BASELINE_MODEL_INPUT = 'baseline_model'  # the Evaluator's input key of the baseline Model

_STATE_NAMES = {number: name for name, number in metadata_store_pb2.Execution.State.items()}
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
# Bookkeeping properties that every artifact carries: hidden in the text output, kept in JSON.
_QUIET_PROPERTIES = ('tfx_version', 'is_external', 'input_fingerprint', 'stats_dashboard_link',
                     'sample_rate_by_split')


# ---------------------------------------------------------------- the store (I/O edge) ------

def open_store(output_dir: str) -> metadata_store.MetadataStore:
  """The ML Metadata store of an output dir, read-only (inspecting never creates or migrates it).

  Raises:
    UserError: no metadata.sqlite there, or not an ML Metadata database.
  """
  path = RunnerConfig(output_dir=output_dir).metadata_path
  if not os.path.isfile(path):
    raise UserError(f'no ML Metadata at {path}: run the pipeline first (local_runner.py '
                    f'--output-dir {output_dir}) or pass the --output-dir it used')
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  if os.path.getsize(path) == 0:
    raise UserError(f'{path} is empty: not an ML Metadata database')
  try:
    store = metadata_store.MetadataStore(config)
    store.get_context_types()
  except RuntimeError as e:
    # MLMD's message: 'Error when executing query: <reason> query: <the SQL>'.
    match = re.search(r'executing query: (.*?) query:', str(e))
    reason = match.group(1) if match else str(e).splitlines()[0]
    raise UserError(f'{path} is not a readable ML Metadata database ({reason})') from e
  return store


# ---------------------------------------------------------------- reading MLMD --------------

def _value(value: metadata_store_pb2.Value) -> Any:
  """A property value as plain Python; TFX's JSON-encoded exec properties are decoded."""
  kind = value.WhichOneof('value')
  if kind is None:
    return None
  if kind in ('struct_value', 'proto_value'):
    return json_format.MessageToDict(getattr(value, kind))
  result = getattr(value, kind)
  if isinstance(result, str) and result[:1] in ('[', '{'):
    try:
      return json.loads(result)
    except ValueError:
      pass
  return result


def _properties(node) -> Dict[str, Any]:
  """An execution's or artifact's properties and custom properties, in one dict."""
  result = {k: _value(v) for k, v in node.custom_properties.items()}
  result.update({k: _value(v) for k, v in node.properties.items()})
  return dict(sorted(result.items()))


def _local_time(ms: int) -> str:
  """Milliseconds since the epoch as local ISO 8601 time with its UTC offset."""
  return datetime.datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec='seconds')


def _component_class(type_name: str) -> str:
  return type_name.rsplit('.', 1)[-1]


@dataclasses.dataclass
class _Run:
  """One run read from the store: its context, pipeline and executions (as dicts)."""
  context: metadata_store_pb2.Context
  pipeline: str
  executions: List[Dict[str, Any]]


def _node_names(store) -> Dict[int, str]:
  """Execution id -> its node context's name ('<pipeline>.<component id>')."""
  names = {}
  for node in store.get_contexts_by_type(NODE_CONTEXT):
    for execution in store.get_executions_by_context(node.id):
      names[execution.id] = node.name
  return names


def _execution_dict(execution, type_name: str, node_name: str, pipeline: str) -> Dict[str, Any]:
  prefix = pipeline + '.'
  component = node_name[len(prefix):] if node_name.startswith(prefix) else node_name
  started, finished = execution.create_time_since_epoch, execution.last_update_time_since_epoch
  return {
      'id': execution.id,
      'component': component or _component_class(type_name),
      'class': _component_class(type_name),
      'type': type_name,
      'state': _STATE_NAMES.get(execution.last_known_state, 'UNKNOWN'),
      'started': _local_time(started),
      'duration_sec': round(max(finished - started, 0) / 1000, 3),
      'properties': _properties(execution),
      '_finished_ms': finished,  # for the run's duration; not in the output
  }


def _read_run(store, context, node_names: Dict[int, str], type_names: Dict[int, str]) -> _Run:
  parents = [c.name for c in store.get_parent_contexts_by_context(context.id)]
  pipeline = parents[0] if parents else ''
  executions = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
  return _Run(context, pipeline, [
      _execution_dict(e, type_names.get(e.type_id, ''), node_names.get(e.id, ''), pipeline)
      for e in executions])


def _run_contexts(store) -> List[metadata_store_pb2.Context]:
  """Every pipeline_run context, oldest first."""
  return sorted(store.get_contexts_by_type(RUN_CONTEXT),
                key=lambda c: (c.create_time_since_epoch, c.id))


def _type_names(store) -> Dict[int, str]:
  return {t.id: t.name for t in store.get_execution_types()}


# ---------------------------------------------------------------- pure summaries ------------

def run_state(executions: Sequence[Dict[str, Any]]) -> str:
  """A run's state from its executions' states.

  FAILED or CANCELED if any execution was; RUNNING while one is NEW/RUNNING (also a run whose
  runner was killed); CACHED when every component reused its outputs (lookup nodes such as the
  baseline resolver always complete); COMPLETE otherwise; EMPTY without executions.
  """
  states = [e['state'] for e in executions]
  if not states:
    return 'EMPTY'
  for state in ('FAILED', 'CANCELED'):
    if state in states:
      return state
  if any(s not in ('COMPLETE', 'CACHED') for s in states):
    return 'RUNNING'
  working = [e['state'] for e in executions if e['class'] not in _LOOKUP_NODES]
  if working and all(s == 'CACHED' for s in working):
    return 'CACHED'
  return 'COMPLETE'


def _find(executions: Sequence[Dict[str, Any]], component_class: str) -> Optional[Dict[str, Any]]:
  """The run's (last) execution of a component class, or None."""
  matches = [e for e in executions if e['class'] == component_class]
  return matches[-1] if matches else None


def _trainer_config(executions) -> Dict[str, Any]:
  trainer = _find(executions, TRAINER)
  custom = (trainer or {}).get('properties', {}).get('custom_config')
  return custom if isinstance(custom, dict) else {}


def config_summary(executions: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """What the run trained on and how, from the executions' properties (None where the component
  did not run): model, epochs, number of classes, data source and its path."""
  example_gen = (_find(executions, EXAMPLE_GEN) or {}).get('properties', {})
  training = _trainer_config(executions).get('training', {})
  class_names = example_gen.get('class_names')
  return {
      'model': training.get('model'),
      'epochs': training.get('epochs'),
      'num_classes': len(class_names) if isinstance(class_names, list) else None,
      'source': example_gen.get('source'),
      'source_path': example_gen.get('source_path'),
  }


def _summary(run: _Run) -> Dict[str, Any]:
  executions = run.executions
  context = run.context
  finished = max([context.create_time_since_epoch] + [
      e.get('_finished_ms', 0) for e in executions])
  by_state: Dict[str, int] = {}
  for e in executions:
    by_state[e['state']] = by_state.get(e['state'], 0) + 1
  return {
      'run_id': context.name,
      'pipeline': run.pipeline,
      'started': _local_time(context.create_time_since_epoch),
      'duration_sec': round((finished - context.create_time_since_epoch) / 1000, 3),
      'state': run_state(executions),
      'failed': [e['component'] for e in executions if e['state'] in ('FAILED', 'CANCELED')],
      'num_executions': len(executions),
      'executions_by_state': by_state,
      'config': config_summary(executions),
      'executions': [{k: e[k] for k in ('id', 'component', 'state', 'type')} for e in executions],
  }


def _public(execution: Dict[str, Any]) -> Dict[str, Any]:
  return {k: v for k, v in execution.items() if not k.startswith('_')}


def list_runs(store: metadata_store.MetadataStore) -> List[Dict[str, Any]]:
  """Every pipeline run in the store, oldest first (the newest last): id, pipeline, start time,
  duration, state, failed components, execution counts, config summary, executions."""
  node_names, type_names = _node_names(store), _type_names(store)
  runs = []
  for context in _run_contexts(store):
    runs.append(_summary(_read_run(store, context, node_names, type_names)))
  return runs


def find_run(store: metadata_store.MetadataStore, run_id: str) -> metadata_store_pb2.Context:
  """The run context named `run_id`, 'latest' (the newest run) or a unique prefix of a run id.

  Raises:
    UserError: no such run, or the prefix matches several runs.
  """
  contexts = _run_contexts(store)
  if not contexts:
    raise UserError('no pipeline runs in ML Metadata yet: run the pipeline first')
  if run_id == LATEST:
    return contexts[-1]
  exact = [c for c in contexts if c.name == run_id]
  matches = exact or [c for c in contexts if c.name.startswith(run_id)]
  if len(matches) == 1:
    return matches[0]
  if matches:
    raise UserError(f'run {run_id!r} is ambiguous: {len(matches)} runs start with it '
                    f'({matches[0].name}, {matches[1].name}, ...)')
  raise UserError(f'no run {run_id!r} in ML Metadata ({len(contexts)} runs, the latest '
                  f'{contexts[-1].name}); list them without --run')


# ---------------------------------------------------------------- one run in full -----------

@dataclasses.dataclass
class RunView:
  """What a section builder sees: the run's executions (dicts, in id order), its artifacts by id,
  and for each execution its input and output artifact ids by event key."""
  summary: Dict[str, Any]
  executions: List[Dict[str, Any]]
  artifacts: Dict[int, Dict[str, Any]]

  def execution(self, component_class: str) -> Optional[Dict[str, Any]]:
    return _find(self.executions, component_class)

  def outputs(self, component_class: str, artifact_type: str) -> List[Dict[str, Any]]:
    """The artifacts of a type that the run's execution of a component wrote (or reused)."""
    execution = self.execution(component_class)
    ids = [i for ids in (execution or {}).get('outputs', {}).values() for i in ids]
    return [self.artifacts[i] for i in ids if self.artifacts[i]['type'] == artifact_type]

  def absent_reason(self, component_class: str) -> str:
    execution = self.execution(component_class)
    if execution is None:
      return f'{component_class} did not run in this run'
    return f'{execution["component"]} {execution["state"]} in this run'


def _events_by_execution(store, execution_ids):
  events: Dict[int, List[metadata_store_pb2.Event]] = {}
  for event in store.get_events_by_execution_ids(execution_ids):
    events.setdefault(event.execution_id, []).append(event)
  return events


def _event_key(event) -> str:
  steps = [s.key for s in event.path.steps if s.HasField('key')]
  return steps[0] if steps else ''


def _run_view(store, run: _Run) -> RunView:
  """Links the run's executions to their artifacts through events; notes, for each artifact, the
  execution in this run that wrote or reused it and, when reused, the run that first wrote it."""
  executions = [dict(e) for e in run.executions]
  events = _events_by_execution(store, [e['id'] for e in executions])
  artifact_ids = sorted({ev.artifact_id for evs in events.values() for ev in evs})
  artifact_types = {t.id: t.name for t in store.get_artifact_types()}
  artifacts = {a.id: {
      'id': a.id, 'type': artifact_types.get(a.type_id, ''), 'uri': a.uri,
      'state': metadata_store_pb2.Artifact.State.Name(a.state),
      'created': _local_time(a.create_time_since_epoch), 'producer': None, 'written_by_run': None,
      'properties': _properties(a)} for a in store.get_artifacts_by_id(artifact_ids)}
  by_id = {e['id']: e for e in executions}
  for e in executions:
    e['inputs'], e['outputs'] = {}, {}
    for event in events.get(e['id'], []):
      side = ('inputs' if event.type in _INPUT_EVENTS else
              'outputs' if event.type in _OUTPUT_EVENTS else None)
      if side and event.artifact_id in artifacts:
        e[side].setdefault(_event_key(event), []).append(event.artifact_id)
        if side == 'outputs':
          artifacts[event.artifact_id]['producer'] = f'{e["component"]}.{_event_key(event)}'
  # The first execution that output an artifact wrote it; a cached one only points at it.
  writers = {}
  for event in store.get_events_by_artifact_ids(artifact_ids):
    if event.type in _OUTPUT_EVENTS:
      writers[event.artifact_id] = min(writers.get(event.artifact_id, event.execution_id),
                                       event.execution_id)
  run_of = {}
  for execution_id in sorted(set(writers.values()) - set(by_id)):
    runs = [c.name for c in store.get_contexts_by_execution(execution_id)
            if c.type == RUN_CONTEXT]
    run_of[execution_id] = runs[0] if runs else None
  for artifact_id, writer in writers.items():
    artifacts[artifact_id]['written_by_run'] = (
        run.context.name if writer in by_id else run_of.get(writer))
  return RunView(_summary(run), executions, artifacts)


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def classes_section(view: RunView) -> Tuple[Optional[List[Dict[str, Any]]], str]:
  """The team's classes from ExampleGen's properties: label, name, source id, superclass."""
  example_gen = view.execution(EXAMPLE_GEN)
  props = (example_gen or {}).get('properties', {})
  names = props.get('class_names') or _trainer_config(view.executions).get('class_names')
  if not names:
    return None, view.absent_reason(EXAMPLE_GEN)
  ids = props.get('source_ids') or [None] * len(names)
  coarse = props.get('coarse_names') or [None] * len(names)
  return [{'label': i, 'name': n, 'id': s, 'superclass': c}
          for i, (n, s, c) in enumerate(zip(names, ids, coarse))], ''


def tuning_section(view: RunView) -> Tuple[Optional[Dict[str, Any]], str]:
  """The Tuner's trials table (components/tuner.py writes it), best trial first."""
  if view.execution(TUNER) is None:
    return None, ''  # this run did not tune
  results = view.outputs(TUNER, TUNER_RESULTS)
  if not results:
    return None, view.absent_reason(TUNER)
  path = os.path.join(results[0]['uri'], constants.TRIALS_FILE)
  try:
    trials = _read_json(path)
  except (OSError, ValueError) as e:
    return None, f'{path}: {getattr(e, "strerror", None) or e}'
  trials.sort(key=lambda t: -(t.get(constants.VAL_ACCURACY) if t.get(constants.VAL_ACCURACY) is not None else -1))
  return {'uri': results[0]['uri'], 'objective': constants.VAL_ACCURACY, 'trials': trials}, ''


def training_section(view: RunView) -> Tuple[Optional[Dict[str, Any]], str]:
  """The Trainer's configuration and its training_stats.json (written next to the model)."""
  models = view.outputs(TRAINER, MODEL)
  if not models:
    return None, view.absent_reason(TRAINER)
  model_uri = models[0]['uri']
  runs = view.outputs(TRAINER, MODEL_RUN)
  stats_path = os.path.join(model_uri, TRAINING_STATS_FILE)
  try:
    stats = _read_json(stats_path)
  except (OSError, ValueError) as e:
    return None, f'{stats_path}: {getattr(e, "strerror", None) or e}'
  return {
      'model_uri': model_uri,
      'model_run_uri': runs[0]['uri'] if runs else None,
      'config': _trainer_config(view.executions).get('training', {}),
      'stats': stats,
  }, ''


def evaluation_section(view: RunView, classes) -> Tuple[Optional[Dict[str, Any]], str]:
  """The Evaluator's metrics on the test split (see `analysis.evaluation_summary`), whether the
  model passed its thresholds, and the baseline it was compared with."""
  evaluations = view.outputs(EVALUATOR, MODEL_EVALUATION)
  if not evaluations:
    return None, view.absent_reason(EVALUATOR)
  from pipeline import analysis  # pylint: disable=g-import-not-at-top
  from pipeline.evaluation import TOP_K  # pylint: disable=g-import-not-at-top
  uri = evaluations[0]['uri']
  class_names = [c['name'] for c in classes or []]
  coarse_names = [c['superclass'] for c in classes or [] if c['superclass']]
  try:
    import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
    result = analysis.load_eval_result(uri)
    validation = tfma.load_validation_result(uri)
    summary = analysis.evaluation_summary(result.slicing_metrics, result.plots, class_names,
                                          coarse_names)
  except Exception as e:  # pylint: disable=broad-except
    # Shown as absent, never a traceback: a deleted or partial evaluation raises OSError or TF's
    # own file errors (not OSErrors), one of other classes a ValueError.
    first_line = (str(e).splitlines() or [''])[0]
    return None, f'{uri}: unreadable evaluation ({type(e).__name__}: {first_line})'
  evaluator = view.execution(EVALUATOR)
  baseline = [view.artifacts[i]['uri'] for i in evaluator['inputs'].get(BASELINE_MODEL_INPUT, [])]
  return {'uri': uri, 'top_k': min(TOP_K, len(class_names) or TOP_K),
          'validation_ok': bool(validation.validation_ok),
          'validation_failures': analysis.validation_failures(validation),
          'baseline_model': baseline[0] if baseline else None, **summary}, ''


def deployment_section(view: RunView) -> Tuple[Optional[Dict[str, Any]], str]:
  """Whether the Evaluator blessed the model, and where the Pusher put it."""
  blessings = view.outputs(EVALUATOR, MODEL_BLESSING)
  if not blessings:
    return None, view.absent_reason(EVALUATOR)
  pushed = view.outputs(PUSHER, PUSHED_MODEL)
  push = pushed[0]['properties'] if pushed else {}
  return {
      'blessed': bool(blessings[0]['properties'].get('blessed', 0)),
      'blessing_uri': blessings[0]['uri'],
      'pushed': bool(push.get('pushed', 0)) if pushed else None,
      'pushed_destination': push.get('pushed_destination') or None,
      'pusher': (view.execution(PUSHER) or {}).get('state'),
  }, ''


# name -> builder(view, details so far) -> (value or None, why it is absent). In print order.
SECTIONS: List[Tuple[str, Callable[[RunView, Dict[str, Any]], Tuple[Any, str]]]] = [
    ('classes', lambda view, details: classes_section(view)),
    ('tuning', lambda view, details: tuning_section(view)),
    ('training', lambda view, details: training_section(view)),
    ('evaluation', lambda view, details: evaluation_section(view, details.get('classes'))),
    ('deployment', lambda view, details: deployment_section(view)),
]


def run_details(store: metadata_store.MetadataStore, run_id: str = LATEST,
                sections: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """One run in full, JSON-ready.

  Args:
    store: the ML Metadata store.
    run_id: a run id, a unique prefix of one, or 'latest'.
    sections: the names of `SECTIONS` to build (None: all); e.g. () for only the executions and
      artifacts, which skips reading the evaluation (and importing TFMA).

  Returns:
    {'run': the `list_runs` entry, one key per section of `SECTIONS` (None when absent),
     'absent': {section: why}, 'executions': [...with input/output artifact ids by key],
     'artifacts': [...with type, URI, properties, producer, and the run that wrote it]}.

  Raises:
    UserError: unknown run (see `find_run`).
  """
  context = find_run(store, run_id)
  run = _read_run(store, context, _node_names(store), _type_names(store))
  view = _run_view(store, run)
  details: Dict[str, Any] = {'run': view.summary}
  absent = {}
  for name, build in SECTIONS:
    if sections is not None and name not in sections:
      continue
    value, reason = build(view, details)
    details[name] = value
    if value is None and reason:  # no reason: the section does not apply (e.g. no tuning)
      absent[name] = reason
  details['absent'] = absent
  details['executions'] = [_public(e) for e in view.executions]
  details['artifacts'] = [view.artifacts[i] for i in sorted(view.artifacts)]
  return details


def run_rows(runs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """`list_runs` flattened to one flat dict per run (a DataFrame's rows)."""
  return [{
      'run_id': r['run_id'], 'pipeline': r['pipeline'], 'started': r['started'],
      'duration_sec': r['duration_sec'], 'state': r['state'], 'failed': ', '.join(r['failed']),
      'executions': r['num_executions'], 'cached': r['executions_by_state'].get('CACHED', 0),
      **r['config']} for r in runs]


def latest_artifact(store: metadata_store.MetadataStore,
                    type_name: str) -> Optional[Dict[str, Any]]:
  """The newest artifact of a type ({'id', 'type', 'uri'}), or None."""
  artifacts = store.get_artifacts_by_type(type_name)
  if not artifacts:
    return None
  newest = max(artifacts, key=lambda a: a.id)
  return {'id': newest.id, 'type': type_name, 'uri': newest.uri}


def lineage(store: metadata_store.MetadataStore, artifact_id: int) -> Dict[str, Any]:
  """Where an artifact came from, walking ML Metadata's events upstream: the execution that wrote
  it (the first one: later cached executions only point at it), that execution's inputs, theirs...
  until artifacts that no execution wrote.

  Returns:
    {'artifact': {id, type, uri}, 'producer': {id, component, type, state, run} or None,
     'inputs': {input key: [nodes like this one]}}; an artifact met a second time (inputs can share
    ancestors, e.g. the schema) is a node with 'seen': True and nothing upstream.
  """
  artifact_types = {t.id: t.name for t in store.get_artifact_types()}
  type_names = _type_names(store)
  expanded = set()

  def producer(artifact_id) -> Tuple[Optional[Dict[str, Any]], Dict[str, List[int]]]:
    """The execution that wrote the artifact, and its input artifact ids by key."""
    writers = [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
               if e.type in _OUTPUT_EVENTS]
    if not writers:
      return None, {}
    execution = store.get_executions_by_id([min(writers)])[0]
    by_type = {c.type: c.name for c in store.get_contexts_by_execution(execution.id)}
    summary = _execution_dict(execution, type_names.get(execution.type_id, ''),
                              by_type.get(NODE_CONTEXT, ''), by_type.get(PIPELINE_CONTEXT, ''))
    inputs: Dict[str, List[int]] = {}
    for event in store.get_events_by_execution_ids([execution.id]):
      if event.type in _INPUT_EVENTS:
        inputs.setdefault(_event_key(event), []).append(event.artifact_id)
    return {'id': execution.id, 'component': summary['component'], 'type': summary['type'],
            'state': summary['state'], 'run': by_type.get(RUN_CONTEXT)}, inputs

  def node(artifact) -> Dict[str, Any]:
    made_by, inputs = producer(artifact.id)
    result = {'artifact': {'id': artifact.id, 'type': artifact_types.get(artifact.type_id, ''),
                           'uri': artifact.uri},
              'producer': made_by, 'inputs': {}}
    if artifact.id in expanded:
      result['seen'] = True
      return result
    expanded.add(artifact.id)
    for key in sorted(inputs):
      result['inputs'][key] = [node(a) for a in store.get_artifacts_by_id(sorted(inputs[key]))]
    return result

  artifacts = store.get_artifacts_by_id([artifact_id])
  if not artifacts:
    raise UserError(f'no artifact {artifact_id} in ML Metadata')
  return node(artifacts[0])


def lineage_rows(tree: Dict[str, Any], depth: int = 0, via: str = '') -> List[Dict[str, Any]]:
  """`lineage` flattened, depth first: one row per artifact with its depth, the input key it
  feeds the level below through, and the component that wrote it."""
  producer = tree['producer'] or {}
  rows = [{'depth': depth, 'via': via, **{k: tree['artifact'][k] for k in ('id', 'type', 'uri')},
           'producer': producer.get('component'), 'execution': producer.get('id'),
           'run': producer.get('run'), 'seen': tree.get('seen', False)}]
  for key, children in tree['inputs'].items():
    for child in children:
      rows.extend(lineage_rows(child, depth + 1, key))
  return rows


def format_lineage(tree: Dict[str, Any]) -> str:
  """`lineage` as an indented tree: each artifact, then '<- component' and its inputs below."""
  lines = []

  def walk(node, indent, via):
    artifact = node['artifact']
    label = f'{via}: ' if via else ''
    lines.append(f'{indent}{label}{artifact["type"]} #{artifact["id"]}  {artifact["uri"]}'
                 + ('  (see above)' if node.get('seen') else ''))
    producer = node['producer']
    if producer:
      lines.append(f'{indent}  <- {producer["component"]} (execution {producer["id"]}, '
                   f'{producer["state"]}, run {producer["run"]})')
      for key, children in node['inputs'].items():
        for child in children:
          walk(child, indent + '     ', key)

  walk(tree, '', '')
  return '\n'.join(lines)


# ---------------------------------------------------------------- text ----------------------

def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = '  ') -> str:
  """Left-aligned columns, two spaces apart; None prints as '-'."""
  cells = [[str(h) for h in headers]] + [['-' if c is None else str(c) for c in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  return '\n'.join(indent + '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                   for r in cells)


def format_duration(seconds: Optional[float]) -> str:
  """'850 ms', '42 s', '3 min 05 s', '2 h 04 min'."""
  if seconds is None:
    return '-'
  if seconds < 1:
    return f'{seconds * 1000:.0f} ms'
  if seconds < 60:
    return f'{seconds:.0f} s' if seconds >= 10 else f'{seconds:.1f} s'
  minutes, secs = divmod(int(round(seconds)), 60)
  if minutes < 60:
    return f'{minutes} min {secs:02d} s'
  hours, minutes = divmod(minutes, 60)
  return f'{hours} h {minutes:02d} min'


def _readable_time(iso: str) -> str:
  """'2026-11-30 10:48:32' from a local ISO 8601 time with offset."""
  return iso[:19].replace('T', ' ')


def _fraction(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:.4f}'


def _signed(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:+.4f}'


def _number(value: Optional[float], digits: int = 0) -> str:
  return '-' if value is None else f'{value:,.{digits}f}'


def _state(summary: Dict[str, Any]) -> str:
  failed = summary.get('failed') or []
  return f'{summary["state"]} at {", ".join(failed)}' if failed else summary['state']


def _plural(count: Optional[int], one: str, many: str = '') -> Optional[str]:
  if count is None:
    return None
  return f'{count} {one if count == 1 else (many or one + "s")}'


def _config_line(config: Dict[str, Any]) -> str:
  parts = [config.get('model') or '-',
           _plural(config.get('epochs'), 'epoch'),
           _plural(config.get('num_classes'), 'class', 'classes'),
           config.get('source')]
  return ', '.join(p for p in parts if p)


def format_runs(runs: Sequence[Dict[str, Any]], metadata_path: str = '') -> str:
  """The overview table of `list_runs`, oldest first."""
  where = f' in {metadata_path}' if metadata_path else ''
  if not runs:
    return f'No pipeline runs{where}.'
  rows = [(r['run_id'], r['pipeline'], _readable_time(r['started']),
           format_duration(r['duration_sec']), _state(r),
           f'{r["num_executions"]} ({r["executions_by_state"].get("CACHED", 0)} cached)',
           _config_line(r['config'])) for r in runs]
  return '\n'.join([
      f'{len(runs)} pipeline run{"s" if len(runs) != 1 else ""}{where} (oldest first; times are '
      'local):',
      format_table(('RUN ID', 'PIPELINE', 'STARTED', 'TOOK', 'STATE', 'EXECUTIONS', 'CONFIG'),
                   rows),
      '',
      'One run in full (classes, training figures, metrics, executions, artifacts): '
      '--run RUN_ID or --run latest.'])


def _format_classes(classes, details) -> List[str]:
  return [f'Classes ({len(classes)})', format_table(
      ('LABEL', 'CLASS', 'SOURCE ID', 'SUPERCLASS'),
      [(c['label'], c['name'], c['id'], c['superclass']) for c in classes])]


def _format_tuning(tuning, details) -> List[str]:
  trials = tuning['trials']
  names = [k for k in (trials[0] if trials else {})
           if k not in ('trial_id', 'status', tuning['objective'], 'seconds', 'family')]
  rows = [(t['trial_id'], t['status'], _fraction(t.get(tuning['objective'])),
           format_duration(t.get('seconds')), *[_short(t.get(n), 12) for n in names])
          for t in trials]
  return [f'Tuning ({_plural(len(trials), "trial")}, best first; {tuning["uri"]})', format_table(
      ('TRIAL', 'STATUS', tuning['objective'].upper(), 'TOOK', *[n.upper() for n in names]),
      rows)]


def _format_training(training, details) -> List[str]:
  s = training['stats']
  config = s.get('training_config') or training['config']  # after tuned values, when recorded
  best = s.get('best_val_accuracy')
  lines = [
      f'Training ({training["model_uri"]})',
      f'  model {s.get("model")}, image size {s.get("image_size")}, '
      f'{_plural(s.get("epochs"), "epoch")}, batch {s.get("batch_size")}, '
      f'optimizer {config.get("optimizer", "-")}, '
      f'precision {s.get("precision")}',
      f'  parameters {_number(s.get("total_params"))} ({_number(s.get("trainable_params"))} '
      'trainable)',
      f'  device {s.get("device_type")} {s.get("device_name")} ({s.get("cpu_cores")} CPU cores, '
      f'{s.get("gpu_count", 0)} GPUs); peak host memory '
      f'{_number(s.get("peak_host_memory_mib"))} MiB',
      f'  {_number(s.get("ms_per_step"), 1)} ms/step, {_number(s.get("examples_per_sec"))} '
      f'examples/s (steady state: {s.get("steady_state_steps")})',
      f'  total training time {format_duration(s.get("total_training_time_sec"))}; '
      f'best val accuracy {_fraction(best)} at epoch {s.get("best_epoch")}',
  ]
  hyperparameters = s.get('hyperparameters') or {}
  if hyperparameters.get('values'):
    shown = ', '.join(f'{k}={_short(v, 12)}' for k, v in hyperparameters['values'].items()
                      if k != 'family' and not k.startswith('tuner/'))
    lines.append(f'  hyperparameters from {hyperparameters.get("source")}: {shown}')
  return lines


def _format_evaluation(evaluation, details) -> List[str]:
  from pipeline import analysis  # pylint: disable=g-import-not-at-top
  from pipeline.evaluation import ACCURACY, TOP_K_ACCURACY  # pylint: disable=g-import-not-at-top
  overall = evaluation['overall']
  k = evaluation['top_k']
  count = overall.get(analysis.EXAMPLE_COUNT)
  header = [
      f'Evaluation (test split, {_number(count)} examples; {evaluation["uri"]})',
      f'  accuracy {_fraction(overall.get(ACCURACY))}, top-{k} accuracy '
      f'{_fraction(overall.get(TOP_K_ACCURACY))}, macro precision '
      f'{_fraction(evaluation["macro_precision"])}, macro recall '
      f'{_fraction(evaluation["macro_recall"])}',
      f'  thresholds {"passed" if evaluation["validation_ok"] else "NOT passed"}; baseline: '
      f'{evaluation["baseline_model"] or "none (no blessed model before)"}',
  ]
  failures = evaluation.get('validation_failures') or []
  if failures:
    shown = ', '.join(f'{r["slice"]}{"=" + r["value"] if r["value"] else ""} '
                      f'({r["metric"]} {_signed(r["metric_value"])})' for r in failures[:3])
    more = f' and {len(failures) - 3} more' if len(failures) > 3 else ''
    header.append(f'  missed {_plural(len(failures), "threshold")}: {shown}{more}')
  diff = evaluation.get('baseline_diff')
  if diff:
    header.append(f'  against the baseline: accuracy {_signed(diff.get(ACCURACY))}, top-{k} '
                  f'accuracy {_signed(diff.get(TOP_K_ACCURACY))}')

  def rows(entries):
    return [(r['class'], _fraction(r.get(ACCURACY)), _fraction(r.get(TOP_K_ACCURACY)),
             _number(r.get(analysis.EXAMPLE_COUNT))) for r in entries]

  return header + [
      format_table(('CLASS', 'ACCURACY', f'TOP-{k}', 'EXAMPLES'), rows(evaluation['per_class'])),
      '',
      format_table(('SUPERCLASS', 'ACCURACY', f'TOP-{k}', 'EXAMPLES'),
                   rows(evaluation['per_superclass']))]


def _format_deployment(deployment, details) -> List[str]:
  if deployment['pushed']:
    pushed = f'pushed to {deployment["pushed_destination"]}'
  elif deployment['pushed'] is None:
    pushed = f'not pushed (Pusher {deployment["pusher"] or "did not run"})'
  else:
    pushed = 'not pushed'
  return ['Deployment', f'  {"blessed" if deployment["blessed"] else "NOT blessed"}; {pushed}']


def _format_executions(details) -> List[str]:
  def ids(by_key):
    return ' '.join(f'{k}:{",".join(map(str, v))}' for k, v in by_key.items()) or '-'
  return ['Executions', format_table(
      ('ID', 'COMPONENT', 'STATE', 'TOOK', 'TYPE', 'INPUTS', 'OUTPUTS'),
      [(e['id'], e['component'], e['state'], format_duration(e['duration_sec']), e['type'],
        ids(e['inputs']), ids(e['outputs'])) for e in details['executions']])]


def _short(value: Any, width: int = 60) -> str:
  text = (value if isinstance(value, str) else f'{value:.4g}' if isinstance(value, float)
          else json.dumps(value))
  return text if len(text) <= width else text[:width - 3] + '...'


def _format_artifacts(details) -> List[str]:
  run_id = details['run']['run_id']
  rows = []
  for a in details['artifacts']:
    shown = ' '.join(f'{k}={_short(v)}' for k, v in a['properties'].items()
                     if k not in _QUIET_PROPERTIES)
    origin = None
    if a['written_by_run'] not in (run_id, None):
      origin = f'{"cached" if a["producer"] else "input"}, from run {a["written_by_run"]}'
    rows.append((a['id'], a['type'], a['producer'] or 'input', a['uri'], origin, shown or None))
  return ['Artifacts', format_table(
      ('ID', 'TYPE', 'PRODUCER', 'URI', 'ORIGIN', 'PROPERTIES'), rows)]


# name -> formatter(section value, details) -> lines; one per entry of SECTIONS.
FORMATTERS: Dict[str, Callable[[Any, Dict[str, Any]], List[str]]] = {
    'classes': _format_classes,
    'tuning': _format_tuning,
    'training': _format_training,
    'evaluation': _format_evaluation,
    'deployment': _format_deployment,
}


def format_run(details: Dict[str, Any]) -> str:
  """`run_details` as text: the run's summary, each section (or why it is absent), executions,
  artifacts."""
  summary = details['run']
  lines = [
      f'Run {summary["run_id"]} of pipeline {summary["pipeline"]}: {_state(summary)}',
      f'  started {_readable_time(summary["started"])} (local time), took '
      f'{format_duration(summary["duration_sec"])}; {summary["num_executions"]} executions '
      f'({summary["executions_by_state"].get("CACHED", 0)} cached)',
      f'  {_config_line(summary["config"])}'
      + (f' ({summary["config"]["source_path"]})' if summary['config'].get('source_path') else ''),
  ]
  for name, _ in SECTIONS:
    if name not in details:
      continue
    lines.append('')
    if details[name] is None and name not in details['absent']:
      lines.pop()  # a section that does not apply to this run (e.g. no tuning)
    elif details[name] is None:
      lines.append(f'{name.capitalize()}: absent ({details["absent"].get(name, "")})')
    else:
      lines.extend(FORMATTERS[name](details[name], details))
  for part in (_format_executions, _format_artifacts):
    lines.append('')
    lines.extend(part(details))
  return '\n'.join(lines)


def to_json(document: Any) -> str:
  """The --json output: indented, keys in insertion order."""
  return json.dumps(document, indent=2, default=str)


# ---------------------------------------------------------------- command line --------------

def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m pipeline.inspect',
      description='What ML Metadata recorded about the pipeline runs in an output dir. Without '
      '--run: one line per run (oldest first, newest last; times in local time): run id, '
      'pipeline, start, duration, state (COMPLETE, CACHED = everything reused, FAILED at '
      '<component>, RUNNING, ...), executions, model/epochs/classes/source. With --run: that run '
      'in full: the team\'s classes, training-time figures, test metrics (overall, macro '
      'precision/recall, per class and superclass), blessing and push, and every execution and '
      'artifact.')
  parser.add_argument('--output-dir', default=RunnerConfig().output_dir,
                      help='the pipeline\'s --output-dir, holding metadata.sqlite '
                      '(default %(default)s)')
  parser.add_argument('--run', metavar='RUN_ID',
                      help="one run in full: its id (or a unique prefix of it), or 'latest'")
  parser.add_argument('--json', action='store_true',
                      help='print one JSON document (the same content) for scripts')
  return parser


def _errors_only(record: logging.LogRecord) -> bool:
  return record.levelno >= logging.ERROR


def quiet_tensorflow() -> None:
  """Hides the deprecation notices that TFMA's import and readers log: no news to the user.

  Call it before TensorFlow loads (its C++ log level is read once). A filter, not only a level:
  in a notebook TensorFlow resets its logger to INFO when it first logs.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  warnings.filterwarnings('ignore', category=FutureWarning, module='google')
  for name in ('tensorflow', 'absl'):
    logger = logging.getLogger(name)
    logger.setLevel(logging.ERROR)
    logger.addFilter(_errors_only)


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = build_parser().parse_args(argv)
  store = open_store(args.output_dir)
  metadata_path = RunnerConfig(output_dir=args.output_dir).metadata_path
  if args.run is None:
    runs = list_runs(store)
    print(to_json({'metadata_path': metadata_path, 'runs': runs}) if args.json
          else format_runs(runs, metadata_path))
    return
  quiet_tensorflow()
  details = run_details(store, args.run)
  print(to_json(details) if args.json else format_run(details))


if __name__ == '__main__':
  cli.run_main(main, sys.argv[1:])
