"""The command line as a user meets it: subcommands listed by --help without loading TensorFlow,
--version, ``python -m tf_translate``, no abbreviated flags, enumerated flags checked before any
work, a missing --method named, user errors on one line and bugs with their traceback, and no
TensorFlow start-up lines unless --verbose."""

import subprocess
import sys
from pathlib import Path

import pytest

from tf_translate import __version__, cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_help_lists_every_command_without_tensorflow():
    script = ("import sys\nfrom tf_translate import cli\ntry:\n    cli.main(['--help'])\n"
              "except SystemExit as e:\n    print('exit', e.code, 'tensorflow' in sys.modules)\n")
    done = run("-c", script)
    assert done.stdout.strip().endswith("exit 0 False"), done.stderr
    for name in cli.COMMANDS:
        assert f"\n  {name} " in done.stdout
    done = run("-m", "tf_translate", "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"tf-translate {__version__}"
    done = run("-m", "tf_translate", "bogus")
    assert done.returncode == 2 and "invalid choice: 'bogus'" in done.stderr
    done = run("-m", "tf_translate")
    assert done.returncode == 2 and "commands:" in done.stderr


def test_start_up_lines_hidden_unless_verbose(tmp_path):
    """A failing command prints its one error line and nothing of TensorFlow's start-up."""
    done = run(str(ROOT / "scripts" / "translate.py"), "--model", str(tmp_path / "none"), "x.png",
               "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'none'}: not an exported model version "
                                                "(no saved_model.pb)"]


def test_caught_stderr_holds_back_library_lines_unless_the_work_fails(monkeypatch, capfd):
    """C++ libraries write to file descriptor 2 directly: in the commands' quiet mode their
    lines are held back, and shown after all when the work they came with fails."""
    import os

    from tf_translate import quiet

    monkeypatch.setattr(quiet, "_quiet", True)
    with quiet.caught_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), quiet.caught_stderr():
        os.write(2, b"converter: op FooBar unsupported\n")
        raise RuntimeError("conversion failed")
    assert capfd.readouterr().err == "converter: op FooBar unsupported\n"
    monkeypatch.setattr(quiet, "_quiet", False)  # a library user sees every line
    with quiet.caught_stderr():
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


@pytest.mark.parametrize("argv, message", [
    (["--method", "cyclegan", "--epoch", "3"], "unrecognized arguments: --epoch 3"),  # no abbreviations
    (["--method", "cyclegan", "--norm", "group"], "argument --norm: invalid choice: 'group'"),
    (["--method", "pix2pix", "--precision", "half"], "argument --precision: invalid choice: 'half'"),
    (["--method", "cyclegan", "--strategy", "gpu"], "argument --strategy: invalid choice: 'gpu'"),
    (["--data", "somewhere"], "--method is required: one of cyclegan, dtn, fast_style, gatys, pix2pix, stargan"),
])
def test_train_refuses_bad_flags_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv, command="train")
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    from tf_translate.errors import UsageError

    def user_error(argv):
        raise UsageError("--thing 3: expected a colour")

    def bug(argv):
        return {}["missing"]

    monkeypatch.setitem(cli.COMMANDS, "translate", (user_error, "", False))
    assert cli.main([], command="translate") == 2
    assert capsys.readouterr().err == "error: --thing 3: expected a colour\n"
    monkeypatch.setitem(cli.COMMANDS, "translate", (bug, "", False))
    with pytest.raises(KeyError, match="missing"):
        cli.main([], command="translate")


@pytest.mark.parametrize("argv", [
    ["--method", "cyclegan", "--upsample", "resize", "--epochs", "30", "--lambda-identity", "0"],
    ["--method", "fast_style", "--style", "a.png,b.png", "--no-flip", "--tflite-variants", "float32"],
    ["--method", "pix2pix", "--data", "clip.mp4", "--frame-gap", "4", "--image-size", "64", "--no-export"],
])
def test_train_command_gives_back_the_config(argv):
    """What the gallery prints under each model: the command that trains it again."""
    cfg = cli.config_from_args(argv)
    command = cli.train_command(cfg)
    assert command.startswith(f"tf-translate train --method {cfg.method} ")
    assert cli.config_from_args(command.split()[2:]) == cfg
    assert "--output" not in command and len(command.split()) < 2 * len(argv) + 4  # only what differs


@pytest.mark.parametrize("argv", [["--method", "dtn", "--epochs", "4"], ["--method", "stargan"]])
def test_train_command_leaves_out_what_the_embedded_data_fills_in(argv):
    """A run's saved config holds what its data filled in (DTN's classes and preset values,
    StarGAN's domains): those were no flags."""
    from tf_translate import data, registry

    cfg = cli.config_from_args(argv)
    saved = data.load(registry.get(cfg.method).data_kind, cfg).complete(cfg)
    assert saved != cfg and cli.train_command(saved) == " ".join(["tf-translate", "train", *argv])


def test_every_method_s_help_says_what_its_default_run_gave(capsys):
    """What a run without --data gives, measured, is in train --help (stylize --help for Gatys)."""
    from tf_translate import registry

    for name in registry.names():
        spec = registry.get(name)
        assert spec.demo_result, f"{name}: no measured demo_result in its registry entry"
        with pytest.raises(SystemExit):
            cli.main(["--method", name, "--help"] if spec.command is None else ["--help"],
                     command=spec.command or "train")
        help_text = "".join(capsys.readouterr().out.split())  # wrapped anywhere, at hyphens too
        assert "".join(spec.demo_result.split()) in help_text
