"""GLUE data, and your own labelled text files, for fine-tuning: tasks,
loading, batching and metrics.

Knows nothing of AD-DROP: it serves any keras-hub classifier.
"""

from keras_addrop.glue.batching import preprocessed_batches
from keras_addrop.glue.batching import sample_indices
from keras_addrop.glue.evaluation import GlueEvaluation
from keras_addrop.glue.evaluation import evaluate_glue
from keras_addrop.glue.loading import load_glue
from keras_addrop.glue.loading import read_glue_tsv
from keras_addrop.glue.metrics import glue_metrics
from keras_addrop.glue.metrics import majority_baseline
from keras_addrop.glue.metrics import predictions_from_outputs
from keras_addrop.glue.tasks import TASKS
from keras_addrop.glue.tasks import GlueTask
from keras_addrop.glue.tasks import get_task
from keras_addrop.glue.text_files import infer_text_columns
from keras_addrop.glue.text_files import read_text_file
from keras_addrop.glue.text_files import text_file_task
