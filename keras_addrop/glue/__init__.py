"""GLUE data for fine-tuning: tasks, loading, batching and metrics.

Knows nothing of AD-DROP: it serves any keras-hub classifier.
"""

from keras_addrop.glue.loading import load_glue
from keras_addrop.glue.loading import read_glue_tsv
from keras_addrop.glue.tasks import TASKS
from keras_addrop.glue.tasks import GlueTask
from keras_addrop.glue.tasks import get_task
