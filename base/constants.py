"""Names that every part of the project shares: features, splits, signatures, files.

Everything else imports these; never re-type one of the literals below elsewhere.
"""

# --- tf.Example features written by ExampleGen (the data contract, README.md "Splits and features") ---
IMAGE_KEY = 'image'  # bytes: PNG-encoded HxWx3 uint8 image (lossless)
LABEL_KEY = 'label'  # int64: 0..N-1, position of the class in the team's sorted class list
LABEL_NAME_KEY = 'label_name'  # bytes: the fine label name, e.g. b'maple_tree'
FINE_LABEL_KEY = 'fine_label'  # int64: the original CIFAR-100 fine label id 0..99
COARSE_LABEL_KEY = 'coarse_label'  # bytes: the CIFAR-100 superclass name
RAW_FEATURE_KEYS = (IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, FINE_LABEL_KEY, COARSE_LABEL_KEY)


def transformed_name(key: str) -> str:
  """Name of a feature after Transform."""
  return key + '_xf'


IMAGE_XF_KEY = transformed_name(IMAGE_KEY)
LABEL_XF_KEY = transformed_name(LABEL_KEY)

# --- splits ---
TRAIN_SPLIT = 'train'
EVAL_SPLIT = 'eval'  # validation: stratified per class from the training images
TEST_SPLIT = 'test'  # the official test images of the team's classes
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, TEST_SPLIT)

# --- serving signatures of the exported model ---
SERVING_SIGNATURE = 'serving_default'
TRANSFORM_SIGNATURE = 'transform_features'
# Encoded images (PNG or JPEG, any size): the `_bytes` suffix tells Vertex AI's and TF Serving's
# REST APIs that the input is binary, sent base64-encoded as {"b64": ...}.
IMAGE_BYTES_SIGNATURE = 'serving_image_bytes'
IMAGE_BYTES_INPUT = 'image_bytes'
EXAMPLES_INPUT = 'examples'
PROBABILITIES_OUTPUT = 'probabilities'  # [B, N] float32
CLASS_ID_OUTPUT = 'class_id'  # [B] int64: the top class, an index into the team's classes
CLASS_NAME_OUTPUT = 'class_name'  # [B] string: its name

# --- files written beside artifacts ---
PROVENANCE_DIR = 'assets.extra'  # inside the SavedModel; TF Serving ignores it, Pusher copies it
TRAINING_STATS_FILE = 'training_stats.json'  # also beside the SavedModel, in the Model artifact
CLASSES_FILE = 'classes.json'  # {'class_names': [...], STORED_IMAGE_SIZE: N}
TRAINING_CONFIG_FILE = 'training_config.json'  # the TrainingConfig the model was trained with
VERSIONS_FILE = 'versions.json'  # the library versions it was trained with
TRIALS_FILE = 'trials.json'  # in the Tuner's tuner_results artifact: one row per trial

# Key of the Trainer's custom_config holding the run's `configs.StudyTag` (study, variant).
STUDY = 'study'

# Key of the Transform/Tuner/Trainer custom_config holding a hash of the code they run, so that a
# code change re-runs them (they name importable functions, which TFX does not fingerprint).
CODE_FINGERPRINT = 'code_fingerprint'

# Side of the stored images: a key of classes.json and of the Transform/Trainer custom_config.
STORED_IMAGE_SIZE = 'stored_image_size'

# --- metrics (Keras history and KerasTuner names) ---
ACCURACY = 'accuracy'
VAL_ACCURACY = 'val_' + ACCURACY  # what callbacks, the Tuner's objective and the stats watch
TRIAL_SECONDS = 'trial_seconds'  # the Tuner records each trial's wall time under this name

# --- component ids, as ML Metadata and the artifact folders name them ---
EXAMPLE_GEN = 'Cifar100ExampleGen'
STATISTICS_GEN = 'StatisticsGen'
SCHEMA_GEN = 'SchemaGen'
CURATED_SCHEMA_GEN = 'CuratedSchemaGen'
EXAMPLE_VALIDATOR = 'ExampleValidator'
VALIDATION_GATE = 'ValidationGate'
TRANSFORM = 'Transform'
TUNER = 'Tuner'
HYPERPARAMETERS_IMPORTER = 'hyperparameters_importer'
TRAINER = 'Trainer'
BASELINE_RESOLVER = 'latest_blessed_model_resolver'
EVALUATOR = 'Evaluator'
PUSHER = 'Pusher'

# --- image sources ---
SOURCE_CIFAR_ARCHIVE = 'cifar100_archive'  # cifar-100-python.tar.gz
SOURCE_CIFAR_FOLDER = 'cifar100_folder'  # its extracted cifar-100-python/ folder
SOURCE_IMAGE_FOLDER = 'image_folder'  # PATH/train/<class>/*, optional PATH/test/<class>/*
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')

# --- test-time augmentations of the exported model (`--tta`; modules/export.py: tta_views) ---
TEST_TIME_AUGMENTATIONS = ('none', 'flip', 'flip_shift')
