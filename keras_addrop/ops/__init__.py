from keras_addrop.ops.addrop_mask import addrop_mask
from keras_addrop.ops.visibility import Visibility
