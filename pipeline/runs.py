"""Run records: what ML Metadata (and the artifacts it points at) knows about the pipeline's runs,
as plain, JSON-ready dicts. The data half of `python -m pipeline.inspect`, which only renders them;
the notebooks and `pipeline.report` read runs through here too.

`list_runs(store)` is the overview (one dict per run) and `run_details(store, run_id)` one run in
full: a list of sections (`SECTIONS`: classes, tuning, training, evaluation, deployment), each built
by one function; a new section (e.g. the Tuner's trials) is one entry here and one formatter in
`pipeline.inspect.FORMATTERS`.

How TFX 1.16 records a run: a `pipeline_run` context (named by the run id) holds the run's
executions, one per node; a cached execution (state CACHED) has OUTPUT events pointing at the
artifacts it reused, so a run's artifacts are its executions' inputs and outputs either way.

The overview reads each run's test accuracy straight from the Evaluator's metrics file (a TFRecord
of TFMA's MetricsForSlice protos, parsed here without TensorFlow: `overall_metrics`). TFMA itself
(`pipeline.analysis`, 10-20 s with TensorFlow) is imported only where a run's evaluation is read in
full (`evaluation_section`).
"""
import dataclasses
import datetime
import glob
import json
import math
import os
import re
import struct
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from google.protobuf import json_format
from google.protobuf import message
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from base.configs import RunnerConfig, StudyTag
from base import compat, constants
from base.constants import TRAINING_STATS_FILE
from base.errors import UserError
from pipeline.evaluation import ACCURACY, TOP_K, TOP_K_ACCURACY

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
# Where TFX records why an execution failed (tfx/orchestration/portable/mlmd/execution_lib.py):
# a custom property holding an ExecutionResult as JSON, when the executor reported one.
EXECUTION_RESULT_PROPERTY = '__execution_result__'
# What TFMA 0.47 writes into a ModelEvaluation (tensorflow_model_analysis/writers/): the sharded
# TFRecord files metrics-SSSSS-of-NNNNN.tfrecord (MetricsForSlice protos, uncompressed) and
# eval_config.json (the EvalRun, whose model specs name the baseline model).
METRICS_FILE_PATTERN = 'metrics*'
EVAL_CONFIG_FILE = 'eval_config.json'

_STATE_NAMES = {number: name for name, number in metadata_store_pb2.Execution.State.items()}
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


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


# ---------------------------------------------------------------- evaluation files ----------

def _tfrecords(path: str) -> Iterator[bytes]:
  """The records of an uncompressed TFRecord file. Each is framed as a little-endian uint64
  length, 4 bytes of its CRC, the data, 4 bytes of the data's CRC; the CRCs are not checked, a
  cut-off file raises ValueError."""
  with open(path, 'rb') as f:
    while True:
      header = f.read(12)
      if not header:
        return
      length = struct.unpack('<Q', header[:8])[0] if len(header) == 12 else -1
      data = f.read(length) if length >= 0 else b''
      if length < 0 or len(data) < length or len(f.read(4)) < 4:
        raise ValueError(f'{path}: a cut-off TFRecord file')
      yield data


def _baseline_models(evaluation_uri: str) -> List[str]:
  """The names of the baseline models in an evaluation ([] without a baseline): with one, TFMA
  stores the metrics of both models in the same records, told apart by their model name."""
  path = os.path.join(evaluation_uri, EVAL_CONFIG_FILE)
  if not os.path.isfile(path):
    return []
  specs = _read_json(path).get('evalConfig', {}).get('modelSpecs', [])
  return [spec.get('name', '') for spec in specs if spec.get('isBaseline')]


def overall_metrics(evaluation_uri: str) -> Dict[str, float]:
  """The evaluated (candidate) model's metrics on the overall slice, {metric name: value}, read
  from the MetricsForSlice records TFMA wrote into a ModelEvaluation, without TensorFlow; the
  diffs against a baseline are left out. {} when the files hold no overall slice.

  Raises:
    OSError: no metrics files there (e.g. a remote or deleted URI); ValueError or
      google.protobuf.message.DecodeError: they are not TFMA's.
  """
  paths = [p for p in sorted(glob.glob(os.path.join(evaluation_uri, METRICS_FILE_PATTERN)))
           if os.path.isfile(p)]
  if not paths:
    raise FileNotFoundError(f'no {METRICS_FILE_PATTERN} files in {evaluation_uri}')
  baselines = _baseline_models(evaluation_uri)
  proto = compat.tfma_metrics_proto()
  for path in paths:
    for record in _tfrecords(path):
      metrics = proto.MetricsForSlice.FromString(record)
      if metrics.slice_key.single_slice_keys or metrics.HasField('cross_slice_key'):
        continue
      return {kv.key.name: kv.value.double_value.value for kv in metrics.metric_keys_and_values
              if kv.value.HasField('double_value') and not kv.key.is_diff
              and kv.key.model_name not in baselines}
  return {}


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
  did not run): model, epochs (with a time budget: the most it may choose), the time budget in
  minutes (None: exactly `epochs`), number of classes, data source and its path."""
  example_gen = (_find(executions, EXAMPLE_GEN) or {}).get('properties', {})
  training = _trainer_config(executions).get('training', {})
  class_names = example_gen.get('class_names')
  return {
      'model': training.get('model'),
      'epochs': training.get('epochs'),
      'time_budget': training.get('time_budget'),
      'num_classes': len(class_names) if isinstance(class_names, list) else None,
      'source': example_gen.get('source'),
      'source_path': example_gen.get('source_path'),
  }


def study_tag(executions: Sequence[Dict[str, Any]]) -> Dict[str, str]:
  """The run's study and variant (`StudyTag`, in the Trainer's custom_config under
  `constants.STUDY`); empty strings for a plain run, which records none."""
  tag = _trainer_config(executions).get(constants.STUDY)
  tag = tag if isinstance(tag, dict) else {}
  return {f.name: str(tag.get(f.name) or '') for f in dataclasses.fields(StudyTag)}


def failure_reason(execution: Dict[str, Any]) -> Optional[str]:
  """Why an execution failed, in one line, when TFX recorded it (an executor's ExecutionResult;
  an exception that escaped the executor leaves none): a traceback's last line, the exception."""
  result = execution.get('properties', {}).get(EXECUTION_RESULT_PROPERTY)
  text = result.get('resultMessage') if isinstance(result, dict) else None
  lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
  if not lines:
    return None
  return lines[-1] if lines[0].startswith('Traceback') else lines[0]


def _output_uri(executions, outputs: Dict[int, List[Tuple[str, str]]], component_class: str,
                artifact_type: str) -> Optional[str]:
  """The URI of the artifact of a type that the run's execution of a component wrote (or, cached,
  reused), from `_outputs_by_execution`."""
  execution = _find(executions, component_class)
  uris = [uri for type_name, uri in outputs.get(execution['id'], []) if type_name == artifact_type
          ] if execution else []
  return uris[0] if uris else None


def _results(executions, outputs: Dict[int, List[Tuple[str, str]]]) -> Dict[str, Any]:
  """The model's URI and training_stats.json path, and its test accuracy and top-k accuracy (the
  overall slice of the Evaluator's evaluation; None when it did not run or is unreadable)."""
  model_uri = _output_uri(executions, outputs, TRAINER, MODEL)
  evaluation_uri = _output_uri(executions, outputs, EVALUATOR, MODEL_EVALUATION)
  metrics: Dict[str, float] = {}
  if evaluation_uri:
    try:
      metrics = overall_metrics(evaluation_uri)
    except (OSError, ValueError, message.DecodeError):
      metrics = {}  # `run_details` says why (its evaluation section reads it with TFMA)
  return {
      'test_accuracy': metrics.get(ACCURACY),
      'test_top_k_accuracy': metrics.get(TOP_K_ACCURACY),
      'model_uri': model_uri,
      'training_stats_path': os.path.join(model_uri, TRAINING_STATS_FILE) if model_uri else None,
      'evaluation_uri': evaluation_uri,
  }


def _summary(run: _Run, outputs: Dict[int, List[Tuple[str, str]]]) -> Dict[str, Any]:
  executions = run.executions
  context = run.context
  finished = max([context.create_time_since_epoch] + [
      e.get('_finished_ms', 0) for e in executions])
  by_state: Dict[str, int] = {}
  for e in executions:
    by_state[e['state']] = by_state.get(e['state'], 0) + 1
  failed = [e for e in executions if e['state'] in ('FAILED', 'CANCELED')]
  training = _trainer_config(executions).get('training', {})
  config = config_summary(executions)
  return {
      'run_id': context.name,
      'pipeline': run.pipeline,
      'started': _local_time(context.create_time_since_epoch),
      'duration_sec': round((finished - context.create_time_since_epoch) / 1000, 3),
      'state': run_state(executions),
      'failed': [e['component'] for e in failed],
      'failure_reason': next((r for r in map(failure_reason, failed) if r), None),
      **study_tag(executions),
      'seed': training.get('seed'),
      **_results(executions, outputs),
      'top_k': min(TOP_K, config['num_classes'] or TOP_K),  # of test_top_k_accuracy
      'num_executions': len(executions),
      'executions_by_state': by_state,
      'config': config,
      'training': training,
      'executions': [{k: e[k] for k in ('id', 'component', 'state', 'type')} for e in executions],
  }


def _public(execution: Dict[str, Any]) -> Dict[str, Any]:
  return {k: v for k, v in execution.items() if not k.startswith('_')}


def _outputs_by_execution(store, execution_ids: Sequence[int]) -> Dict[int, List[Tuple[str, str]]]:
  """Execution id -> (artifact type, URI) of each artifact it output, in one query per kind."""
  if not execution_ids:
    return {}
  events = [e for e in store.get_events_by_execution_ids(list(execution_ids))
            if e.type in _OUTPUT_EVENTS]
  artifact_types = {t.id: t.name for t in store.get_artifact_types()}
  artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted({e.artifact_id for e in events}))}
  outputs: Dict[int, List[Tuple[str, str]]] = {}
  for event in events:
    artifact = artifacts.get(event.artifact_id)
    if artifact is not None:
      outputs.setdefault(event.execution_id, []).append(
          (artifact_types.get(artifact.type_id, ''), artifact.uri))
  return outputs


def _result_outputs(store, runs: Sequence[_Run]) -> Dict[int, List[Tuple[str, str]]]:
  """The outputs of the runs' Trainer and Evaluator executions (what `_results` reads)."""
  return _outputs_by_execution(store, [e['id'] for run in runs for e in run.executions
                                       if e['class'] in (TRAINER, EVALUATOR)])


def list_runs(store: metadata_store.MetadataStore,
              ledger: Sequence[Dict[str, Any]] = ()) -> List[Dict[str, Any]]:
  """Every pipeline run in the store, oldest first (the newest last): id, pipeline, start time,
  duration, state, failed components and why, study and variant, seed, test accuracy and top-k
  accuracy, model URI and training_stats.json path, execution counts, config summary, training
  config, executions. Reads no TensorFlow or TFMA (see `overall_metrics`).

  `ledger`: the study ledger of the output dir (`read_ledger`), which attributes the runs that
  stopped before their Trainer (`attribute_runs`)."""
  node_names, type_names = _node_names(store), _type_names(store)
  runs = [_read_run(store, context, node_names, type_names) for context in _run_contexts(store)]
  outputs = _result_outputs(store, runs)
  return attribute_runs([_summary(run, outputs) for run in runs], ledger)


# ---------------------------------------------------------------- the study ledger ----------
#
# A run records its study tag in its Trainer's configuration (so that the tag never changes the
# data components' cache keys); a run that fails in ExampleGen .. Transform has no Trainer and no
# tag. `pipeline.study` therefore also writes, in the output dir, one JSON line per run as it
# starts it (pipeline, study, variant, seed, start time) and one as it ends (the same and the end
# time). TFX names a run by its start time and the study starts one local_runner process (one
# run) at a time, so the run of an entry is the first run of its pipeline that started between
# the entry's start and end (a study killed mid-run wrote no end: the next entry's start).

_LEDGER_KEYS = ('pipeline', 'study', 'variant', 'seed', 'started')


def ledger_path(output_dir: str) -> str:
  return RunnerConfig(output_dir=output_dir).study_ledger_path


def append_ledger(output_dir: str, entry: Dict[str, Any]) -> None:
  """Appends one entry ({pipeline, study, variant, seed, started[, ended]}, times in seconds
  since the epoch) to the output dir's study ledger."""
  with open(ledger_path(output_dir), 'a') as f:
    f.write(json.dumps(entry, sort_keys=True) + '\n')


def read_ledger(output_dir: str) -> List[Dict[str, Any]]:
  """The study ledger's entries, oldest first, the start and end lines of a run merged; [] when
  there is none. Lines that are not a complete entry (a study killed while writing) are skipped."""
  try:
    with open(ledger_path(output_dir)) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return []
  merged: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
  for line in lines:
    try:
      entry = json.loads(line)
    except ValueError:
      continue
    if not isinstance(entry, dict) or any(k not in entry for k in _LEDGER_KEYS):
      continue
    key = tuple(entry[k] for k in _LEDGER_KEYS)
    merged[key] = {**merged.get(key, {}), **entry}
  return sorted(merged.values(), key=lambda e: e['started'])


def _started_sec(record: Dict[str, Any]) -> float:
  """A run's start (`started`, ISO 8601 with its UTC offset, whole seconds) since the epoch."""
  return datetime.datetime.fromisoformat(record['started']).timestamp()


def attribute_runs(records: Sequence[Dict[str, Any]],
                   ledger: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """The `list_runs` records with the study, variant and seed of each untagged run that a ledger
  entry started (`attributed`: 'ledger'); a run whose Trainer recorded its tag keeps it."""
  entries = sorted(ledger, key=lambda e: e['started'])
  result = [dict(r) for r in records]
  for i, entry in enumerate(entries):
    end = entry.get('ended') or (entries[i + 1]['started'] if i + 1 < len(entries) else math.inf)
    # Whole seconds: `started` of a record is rounded down to them.
    mine = [r for r in result if r.get('pipeline') == entry['pipeline'] and
            math.floor(entry['started']) <= _started_sec(r) <= end]
    if not mine or mine[0].get('study'):
      continue
    mine[0].update(study=entry['study'], variant=entry['variant'], seed=entry['seed'],
                   attributed='ledger')
  return result


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
  return RunView(_summary(run, _result_outputs(store, [run])), executions, artifacts)


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
      'failure_reason': r['failure_reason'], 'study': r['study'], 'variant': r['variant'],
      'seed': r['seed'], 'test_accuracy': r['test_accuracy'],
      'test_top_k_accuracy': r['test_top_k_accuracy'], 'top_k': r['top_k'],
      'executions': r['num_executions'], 'cached': r['executions_by_state'].get('CACHED', 0),
      **r['config'], 'model_uri': r['model_uri']} for r in runs]


def latest_artifact(store: metadata_store.MetadataStore, type_name: str,
                    producer: str = '') -> Optional[Dict[str, Any]]:
  """The newest artifact of a type ({'id', 'type', 'uri'}), or None; with `producer` (a component
  id, e.g. 'Cifar100ExampleGen'), the newest one that component's executions output."""
  artifacts = store.get_artifacts_by_type(type_name)
  if producer:
    nodes = [c.id for c in store.get_contexts_by_type(NODE_CONTEXT)
             if c.name.endswith('.' + producer)]
    executions = [e.id for node in nodes for e in store.get_executions_by_context(node)]
    written = {e.artifact_id for e in store.get_events_by_execution_ids(executions)
               if e.type in _OUTPUT_EVENTS} if executions else set()
    artifacts = [a for a in artifacts if a.id in written]
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
