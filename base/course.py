"""Figures the course published, kept as data so benchmarks and reports quote them from one place.

`COURSE_MS_PER_STEP`: the course's timing table, training milliseconds per step at batch 128 with
100 classes, for the notebook's two models on the GPUs students use. Source: the course's table of
step times on Colab (T4), Kaggle (P100) and an RTX 2080 Ti, copied into this project with the first
step-time benchmark (commit be3deab, `benchmarks/step_time.py`); docs/benchmarks.md shows it beside
this project's CPU measurements. `benchmarks/step_time.py` and `pipeline.report` print it next to
the ms/step measured on the current device.
"""

COURSE_BATCH_SIZE = 128  # the batch size of the course's table
COURSE_NUM_CLASSES = 100  # the number of classes of the course's table

COURSE_MS_PER_STEP = {  # device -> model -> ms/step
    'Colab T4': {'simple_cnn': 15, 'vgg16': 75},
    'Kaggle P100': {'simple_cnn': 15, 'vgg16': 53},
    'RTX 2080 Ti': {'simple_cnn': 7, 'vgg16': 28},
}
