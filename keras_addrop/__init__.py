"""AD-DROP (attribution-driven dropout) for Keras 3 and keras-hub."""

from keras_addrop import attribution
from keras_addrop import callbacks
from keras_addrop import glue
from keras_addrop import layers
from keras_addrop import models
from keras_addrop import ner
from keras_addrop import ops
from keras_addrop import optimizers
from keras_addrop.models.swap_attention import swap_attention
from keras_addrop.train_step import ADDropTrainStep
from keras_addrop.version import __version__
from keras_addrop.version import version
