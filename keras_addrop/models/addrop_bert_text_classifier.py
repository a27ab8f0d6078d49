import keras_hub

from keras_addrop.api_export import keras_addrop_export
from keras_addrop.models.hub_task import ADDropHubClassifier


@keras_addrop_export("keras_addrop.models.ADDropBertTextClassifier")
class ADDropBertTextClassifier(
    ADDropHubClassifier, keras_hub.models.BertTextClassifier
):
    """A keras-hub BERT classifier fine-tuned with AD-DROP.

    `keras_hub.models.BertTextClassifier` with the self-attention of every
    encoder layer swapped for `keras_addrop.layers.ADDropAttention` (same
    weights) and AD-DROP's two-pass `train_step`: each step first attributes
    the prediction (the pseudo label's logit) to the attention weights of
    the selected layers, then trains on the batch with a share of the
    highest-attribution positions dropped from each attention row.
    Evaluation and prediction never apply AD-DROP, so `predict` and
    `evaluate` match the stock classifier with the same weights, and
    `.weights.h5` files load both ways between the two.

    Without a callback, AD-DROP runs on every epoch (the paper's "w/o
    cross-tuning"). Pass `keras_addrop.callbacks.CrossTuning()` to `fit` for
    the paper's schedule: plain fine-tuning on odd epochs (1, 3, ...), AD-DROP
    on even ones. Training logs carry `addrop_drop_fraction`, the share of
    real attention positions (real query x real key, selected layers, all
    heads) dropped, averaged over the epoch.

    `backbone_cls` stays `keras_hub.models.BertBackbone`, so `from_preset`
    takes what `BertTextClassifier.from_preset` takes: a preset name, a local
    keras-hub preset folder or a local Hugging Face folder (pass
    `num_classes`), plus the AD-DROP arguments. A preset holding a fine-tuned
    stock `BertTextClassifier` loads with its classification head.

    Trains on the TensorFlow, JAX and PyTorch backends with the same masks
    and numbers; `.keras` and `.weights.h5` files move between them.

    Args:
        backbone: a `keras_hub.models.BertBackbone`. Its attention layers are
            converted in place (see `keras_addrop.swap_attention`).
        num_classes: int. Number of classes; 1 for regression (STS-B).
        preprocessor: `None` or a
            `keras_hub.models.BertTextClassifierPreprocessor`.
        activation: as in `keras_hub.models.BertTextClassifier`.
        dropout: float. Dropout before the classification head.
        candidate_ratio: float in [0, 1], `p` in the paper: the share of each
            attention row's real keys, highest attribution first, that are
            candidates for dropping. Defaults to `0.3`.
        drop_rate: float in [0, 1], `q` in the paper: the probability of
            dropping each candidate. Defaults to `0.3`.
        addrop_layers: `"all"` or a sequence of encoder layer indices (0 is
            the first layer) whose attention AD-DROP masks. Defaults to
            `(0,)`, the reference code's default.
        attribution: how positions are ranked (the paper's Table 2):
            `"gradient"` (GA, default), `"integrated_gradients"` (IGA),
            `"attention"` (AA: the attention weights themselves) or
            `"random"` (RD: each real position a candidate with probability
            `candidate_ratio`). See
            `keras_addrop.attribution.compute_attribution`.
        attribution_labels: `"pseudo"` (the paper's choice: the argmax of
            the attribution pass) or `"gold"` (the true label's logit).
            Regression heads always use the gold score. Defaults to
            `"pseudo"`.
        drop_region: `"high"` (default) drops among the highest-attribution
            keys; `"low"` among the lowest (the paper's prior experiment,
            Fig. 2).
        ig_steps: int, the number of integrated-gradient steps `m` for
            `attribution="integrated_gradients"`. Defaults to 20.
        seed: int or `None`. Seed of the random drops.
        merge_repeated_rows: bool. Whether `fit` makes the optimizer sum the
            gradient slices of an embedding row looked up more than once in
            a batch before updating it, so that the row moves as the dense
            gradient moves it (see
            `keras_addrop.optimizers.merge_repeated_rows`). `False` keeps
            Keras' stock update, which over-counts such rows in Adam's
            second moment. Defaults to `True`.
        **kwargs: passed to `keras_hub.models.BertTextClassifier`.

    Raises:
        ValueError: for `candidate_ratio` or `drop_rate` outside [0, 1], a
            layer index out of range or an unknown string.

    Example:

    ```python
    # A local Hugging Face folder, e.g. the MiniLM-L6 package's.
    classifier = keras_addrop.models.ADDropBertTextClassifier.from_preset(
        "path/to/model", num_classes=2, candidate_ratio=0.3, drop_rate=0.3,
        addrop_layers="all",
    )
    classifier.fit(
        x=(["The cat sat."], ["A cat was sitting."]), y=[1], epochs=4,
        callbacks=[keras_addrop.callbacks.CrossTuning()],
    )

    # A randomly initialised tiny model, no preprocessing.
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16,
    )
    classifier = keras_addrop.models.ADDropBertTextClassifier(
        backbone, num_classes=2, addrop_layers="all"
    )
    ```

    References:
        - [Yang et al., 2022](https://arxiv.org/abs/2210.05883)
    """

    _stock_cls = keras_hub.models.BertTextClassifier
