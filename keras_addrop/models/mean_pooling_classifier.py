import keras

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.addrop_model import ADDropModel
from keras_addrop.validation import validate_positive_int
from keras_addrop.validation import validate_ratio


@keras_addrop_export("keras_addrop.models.mean_pooling_classifier")
def mean_pooling_classifier(
    backbone, num_classes, dropout=0.1, name="mean_pooling_classifier", **kwargs
):
    """An AD-DROP classifier on the mean of a backbone's token outputs.

    keras-hub's text classifiers read the `[CLS]` token through the
    backbone's pooler. Sentence encoders such as all-MiniLM-L6-v2 were
    trained on the mean of the token outputs instead, and their pooler was
    never trained; for them this head starts where the checkpoint left off.
    The head is dropout and a dense layer on the padding-masked mean of the
    backbone's sequence output. The backbone's attention is swapped for
    `keras_addrop.layers.ADDropAttention` in place (weights kept), and the
    result is a `keras_addrop.models.ADDropModel`: the same AD-DROP step,
    options, `CrossTuning` schedule and `.keras` saving as the keras-hub
    classifiers. It takes preprocessed inputs (the backbone's dict of
    `token_ids`, `padding_mask`, ...); preprocess with the preset's
    preprocessor, e.g. `keras_hub.models.BertTextClassifierPreprocessor`.
    A backbone without a `padding_mask` input (RoFormer-v2) pads with token
    id 0, and the head follows that rule.
    The backbone's `[CLS]` pooler (BERT) is unused and gets no gradients
    (the train step keeps Keras from warning about it). It stays trainable
    so that saved optimizer states always match.

    Trains on the TensorFlow, JAX and PyTorch backends.

    Args:
        backbone: a keras-hub encoder backbone with a `padding_mask` input
            (`keras_hub.models.BertBackbone`, `RobertaBackbone`, ...) or,
            padding with token id 0, a `token_ids` input
            (`keras_hub.models.RoformerV2Backbone`).
        num_classes: int. Number of classes; 1 for regression (STS-B).
        dropout: float. Dropout on the pooled output. Defaults to `0.1`.
        name: str. The model's name.
        **kwargs: AD-DROP options passed to
            `keras_addrop.models.ADDropModel` (`candidate_ratio`,
            `drop_rate`, `addrop_layers`, `attribution`, ...).

    Returns:
        A `keras_addrop.models.ADDropModel` whose outputs are logits
        `(batch, num_classes)`.

    Raises:
        ValueError: for `num_classes` below 1, `dropout` outside [0, 1), a
            backbone with neither a `padding_mask` nor a `token_ids` input, or
            a bad AD-DROP option.

    Example:

    ```python
    backbone = keras_hub.models.BertBackbone.from_preset("path/to/model")
    model = keras_addrop.models.mean_pooling_classifier(
        backbone, num_classes=2, addrop_layers="all"
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(5e-5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ```
    """
    num_classes = validate_positive_int("num_classes", num_classes)
    dropout = validate_ratio("dropout", dropout, include_one=False)
    inputs = backbone.input
    if isinstance(inputs, dict) and "padding_mask" in inputs:
        padding_mask = "padding_mask"
        real = inputs["padding_mask"]
    elif isinstance(inputs, dict) and "token_ids" in inputs:
        # The rule of backbones without a padding-mask input (RoFormer-v2):
        # token id 0 is padding. A nonzero token id reads as a true mask.
        padding_mask = "token_ids"
        real = keras.ops.not_equal(inputs["token_ids"], 0)
    else:
        raise ValueError(
            "`mean_pooling_classifier` needs a backbone with a "
            "`padding_mask` or a `token_ids` input. Received: backbone with "
            f"inputs {inputs}"
        )
    outputs = backbone(inputs)
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    # Padding must not dilute the mean: the sentence encoders were trained
    # on the mean over real tokens only.
    pooled = keras.layers.GlobalAveragePooling1D(name="mean_pooling")(
        outputs, mask=real
    )
    pooled = keras.layers.Dropout(dropout, name="output_dropout")(pooled)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="logits",
    )(pooled)
    return ADDropModel(
        inputs, logits, padding_mask=padding_mask, name=name, **kwargs
    )
