import keras


def keras_addrop_export(path):
    """Registers a public class for `.keras` serialization.

    `path` is the public name (`"keras_addrop.layers.ADDropAttention"`); the
    serialization key is `"keras_addrop>ClassName"`, so `import keras_addrop`
    is all a user needs before `keras.saving.load_model`.
    """
    del path  # Documentation only: the API is exported by hand.
    return keras.saving.register_keras_serializable(package="keras_addrop")
