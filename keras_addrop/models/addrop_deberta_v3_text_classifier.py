import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_text_classifier import ADDropTextClassifier
from keras_addrop.models.addrop_text_classifier import family_class
from keras_addrop.train_step import with_addrop_arguments


@family_class
@keras_addrop_export("keras_addrop.models.ADDropDebertaV3TextClassifier")
@with_addrop_arguments
class ADDropDebertaV3TextClassifier(
    ADDropTextClassifier, keras_hub.models.DebertaV3TextClassifier
):
    """A keras-hub DeBERTa-v3 classifier fine-tuned with AD-DROP.

    `keras_hub.models.DebertaV3TextClassifier` with every encoder's
    disentangled self-attention swapped for
    `keras_addrop.layers.ADDropDisentangledSelfAttention` (same weights) and
    AD-DROP's two-pass `train_step`. The attention weights AD-DROP
    attributes and masks are DeBERTa's own probabilities, the softmax of the
    content and relative-position scores together: a dropped key is
    masked like padding before that softmax. Otherwise it behaves as
    `keras_addrop.models.ADDropBertTextClassifier` does.

    Trains on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: a `keras_hub.models.DebertaV3Backbone`.
        num_classes: int. Number of classes; 1 for regression.
        preprocessor: `None` or a
            `keras_hub.models.DebertaV3TextClassifierPreprocessor`.
        activation: as in `keras_hub.models.DebertaV3TextClassifier`.
        hidden_dim: int. Size of the head's pooling layer; defaults to the
            backbone's hidden size.
        dropout: float. Dropout in the classification head.
        {addrop_arguments}
        **kwargs: passed to `keras_hub.models.DebertaV3TextClassifier`.

    Raises:
        ValueError: for an out-of-range or unknown AD-DROP argument.

    Example:

    ```python
    classifier = keras_addrop.models.ADDropTextClassifier.from_preset(
        "deberta_v3_base_en", num_classes=2, addrop_layers="all"
    )
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_cls = keras_hub.models.DebertaV3TextClassifier
    _family = "DeBERTa-v3"
