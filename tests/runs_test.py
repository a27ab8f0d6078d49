import os
from unittest import mock

import matplotlib.figure
import numpy as np

from keras_addrop import runs
from tests.test_case import TestCase
from tests.test_case import tiny_family_task


class PlotLossesTest(TestCase):
    def test_epoch_axis_has_whole_epochs_only(self):
        result = {
            "task": "MRPC",
            "method": "plain",
            "epochs": [
                {"epoch": e, "train_loss": 0.7 - e / 10, "dev": {"loss": 0.6}}
                for e in (1, 2)
            ],
        }
        saved = []
        original = matplotlib.figure.Figure.savefig

        def save(figure, *args, **kwargs):
            saved.append(figure)
            return original(figure, *args, **kwargs)

        path = os.path.join(self.get_temp_dir(), "losses.png")
        with mock.patch.object(matplotlib.figure.Figure, "savefig", save):
            runs.plot_losses(result, path)
        self.assertTrue(os.path.isfile(path))
        ticks = saved[0].axes[0].get_xticks()
        visible = ticks[(ticks >= 1) & (ticks <= 2)]
        self.assertNotEmpty(visible)
        self.assertAllEqual(visible, np.round(visible))


class PresetErrorsTest(TestCase):
    def test_a_preset_that_cannot_be_downloaded_is_one_clear_line(self):
        def offline(preset, **kwargs):
            # What requests raises for a hub without a network (an OSError).
            raise ConnectionError("Max retries exceeded\nlong traceback text")

        with self.assertRaises(runs.RunError) as raised:
            runs.from_preset(offline, "bert_base_en_uncased", num_classes=2)
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        self.assertIn(
            "could not download the preset 'bert_base_en_uncased' "
            "(ConnectionError: Max retries exceeded)",
            message,
        )
        self.assertIn("pass a local keras-hub or Hugging Face folder", message)
        self.assertTrue(message.endswith("--preset=bert_base_en_uncased"))

    def test_an_unreadable_local_preset_is_not_called_a_download(self):
        folder = self.get_temp_dir()

        def broken(preset, **kwargs):
            raise OSError("Unable to open file (truncated file)")

        with self.assertRaisesRegex(
            runs.RunError,
            r"^could not read the preset folder \(OSError: Unable to open "
            rf"file \(truncated file\)\)\. Received: --preset={folder}$",
        ):
            runs.from_preset(broken, folder)


class ClassifierClassTest(TestCase):
    def test_the_presets_family_picks_the_classifier_or_is_refused(self):
        import keras_addrop

        def saved(task):
            folder = self.get_temp_dir()
            task.save_to_preset(folder)
            return folder

        for family, cls in (
            ("distil_bert", keras_addrop.models.ADDropDistilBertTextClassifier),
            ("albert", keras_addrop.models.ADDropAlbertTextClassifier),
            ("roformer_v2", keras_addrop.models.ADDropRoformerV2TextClassifier),
        ):
            self.assertIs(
                runs.classifier_class(saved(tiny_family_task(family))), cls
            )
        folder = saved(tiny_family_task("f_net"))
        with self.assertRaisesRegex(
            runs.RunError,
            "^AD-DROP has no classifier for the FNet family; it supports "
            "ALBERT, BERT, DeBERTa-v3, DistilBERT, RoBERTa, RoFormer-v2, "
            "XLM-RoBERTa. Received: "
            "--preset=",
        ):
            runs.classifier_class(folder)
