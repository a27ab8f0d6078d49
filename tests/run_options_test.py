import argparse
import inspect

import pytest

import keras_addrop_cli
from keras_addrop import run_options
from keras_addrop import validation
from keras_addrop.models.addrop_task import ADDROP_ARGUMENTS
from keras_addrop.train_step import ADDropTrainStep
from tests.test_case import TestCase


def parsed(*argv):
    return keras_addrop_cli.build_parser().parse_args(
        ["finetune", *argv, "--output", "x"]
    )


@pytest.mark.all_backends
class RunOptionsTest(TestCase):
    def test_every_option_is_a_flag_of_finetune_and_sweep(self):
        parser = keras_addrop_cli.build_parser()
        commands = parser._subparsers._group_actions[0].choices
        for command in ("finetune", "sweep"):
            flags = {
                action.option_strings[0]: action
                for action in commands[command]._actions
                if action.option_strings
            }
            for option in run_options.OPTIONS:
                self.assertIn(option.flag, flags, msg=command)
                self.assertEqual(flags[option.flag].dest, option.name)
                self.assertEqual(flags[option.flag].default, option.default)
        sweep = {a.dest for a in commands["sweep"]._actions}
        for option in run_options.SWEEP_OPTIONS:
            self.assertIn(option.name, sweep)

    def test_attention_kinds_are_the_seq2seq_models(self):
        from keras_addrop.models import addrop_seq2seq_lm

        self.assertEqual(
            run_options.ATTENTION_KINDS, addrop_seq2seq_lm.ATTENTION_KINDS
        )
        parse = run_options.BY_NAME["addrop_attention"].parse
        self.assertEqual(parse("cross,encoder"), ("cross", "encoder"))
        self.assertEqual(parse("decoder"), "decoder")

    def test_model_options_are_the_classifiers_arguments(self):
        arguments = run_options.model_arguments(parsed())
        self.assertEqual(set(arguments), set(ADDROP_ARGUMENTS))
        signature = inspect.signature(ADDropTrainStep.__init__)
        for name, value in arguments.items():
            self.assertIn(name, signature.parameters)
            # The flags' defaults are the model's own defaults.
            default = signature.parameters[name].default
            if name == "seed":
                continue  # The model's seed is None; a run is seeded.
            self.assertEqual(value, default, msg=name)

    def test_renamed_flags_map_to_their_model_arguments(self):
        arguments = run_options.model_arguments(
            parsed("--labels", "gold", "--stock-embedding-updates")
        )
        self.assertEqual(arguments["attribution_labels"], "gold")
        self.assertIs(arguments["merge_repeated_rows"], False)
        config = run_options.recorded_config(parsed("--labels", "gold"))
        self.assertEqual(config["labels"], "gold")
        self.assertIs(config["stock_embedding_updates"], False)

    def test_the_config_records_every_option_but_the_unrecorded_in_json_types(
        self,
    ):
        config = run_options.recorded_config(parsed("--addrop-layers", "0,2"))
        recorded = {o.name for o in run_options.OPTIONS if o.recorded}
        self.assertEqual(set(config), recorded)
        self.assertNotIn("verbose", config)
        self.assertEqual(config["addrop_layers"], [0, 2])

    def test_an_object_without_every_option_gets_the_defaults(self):
        arguments = run_options.model_arguments(argparse.Namespace(seed=3))
        self.assertEqual(arguments["seed"], 3)
        self.assertEqual(arguments["candidate_ratio"], 0.3)

    def test_parsers_refuse_in_the_validation_modules_wording(self):
        for parse, text, expected in (
            (run_options.ratio("drop_rate"), "1.5", 1.5),
            (run_options.ratio("drop_rate"), "high", "high"),
            (run_options.positive_int("epochs"), "0", 0),
            (run_options.positive_int("epochs"), "2.5", "2.5"),
            (run_options.integer("seed"), "x", "x"),
        ):
            with self.assertRaises(ValueError) as raised:
                parse(text)
            name = "drop_rate" if "rate" in str(raised.exception) else None
            name = name or str(raised.exception).split("`")[1]
            self.assertTrue(
                str(raised.exception).endswith(f"Received: {name}={expected!r}")
            )
            self.assertTrue(
                str(raised.exception).startswith(
                    f"Invalid value for argument `{name}`"
                )
            )
        self.assertEqual(run_options.ratio("p")("0.25"), 0.25)
        self.assertEqual(run_options.layer_indices("l")("1,3"), (1, 3))
        self.assertEqual(run_options.layer_indices("l")("all"), "all")
        with self.assertRaisesRegex(ValueError, "Received: l='1,x'"):
            run_options.layer_indices("l")("1,x")
        with self.assertRaisesRegex(ValueError, "Received: lr=nan"):
            run_options.real("lr")("nan")
        self.assertEqual(
            str(validation.invalid_argument("a", "b", 1)),
            "Invalid value for argument `a`: expected b. Received: a=1",
        )

    def test_the_command_line_uses_the_packages_own_table(self):
        # Loaded before Keras under a name of its own: the same file.
        self.assertEqual(
            keras_addrop_cli.run_options.__file__, run_options.__file__
        )
        self.assertEqual(
            [o.name for o in keras_addrop_cli.run_options.OPTIONS],
            [o.name for o in run_options.OPTIONS],
        )
