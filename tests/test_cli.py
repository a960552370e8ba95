"""The `vigil` command line as a user meets it: --version, help, `vigil init`, `vigil train`
option checking and output layout, and a closed pipe.

`vigil init` is run on real model files (scikit-learn fitted on a DataFrame and on an
array, XGBoost) and real reference files; what it writes must load as a ModelMonitor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

import vigil
from vigil.cli import build_parser, main
from vigil.spec import load_monitor

FEATURES = ["age", "income", "channel", "tier"]


def reference(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "label": rng.integers(0, 2, n),  # not a feature: the model never saw it
        "age": rng.normal(40, 10, n).round(1),
        "income": rng.lognormal(10, 0.5, n).round(2),
        "channel": rng.choice(["web", "pos", "atm"], n),
        "tier": rng.integers(0, 4, n),
    })


def numeric(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[FEATURES].copy()
    out["channel"] = out["channel"].map({"web": 0, "pos": 1, "atm": 2})
    return out


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil", *argv], capture_output=True, text=True, timeout=120)


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"vigil {vigil.__version__}"


def _actions(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def test_every_option_and_argument_has_help():
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, a in _actions(build_parser(), "vigil")
               if a.help is None or (a.help != argparse.SUPPRESS and not a.help.strip())]
    assert not missing, f"options without help text: {missing}"


# -- vigil init ------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    from sklearn.linear_model import LogisticRegression

    frame = reference()
    frame.to_csv(tmp_path / "reference.csv", index=False)
    # fitted on a DataFrame: the model knows its feature names (feature_names_in_)
    model = LogisticRegression(max_iter=500).fit(numeric(frame), frame["label"])
    joblib.dump(model, tmp_path / "churn.joblib")
    return tmp_path


def test_init_takes_feature_names_from_the_model_and_categories_from_the_reference(files):
    out = files / "monitor.yaml"
    assert main(["init", str(files / "churn.joblib"), str(files / "reference.csv"), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("#") and "feature names the model was fitted with" in text
    monitor = load_monitor(out)
    schema = monitor.spec.schema_
    assert schema.feature_names == FEATURES  # the model's order; `label` left out
    # ≤ 10 distinct values: strings as their values, integer codes 0..k-1 as a count; age/income are numbers
    assert schema.categorical == {"channel": ["atm", "pos", "web"], "tier": 4}
    assert monitor.spec.model.format == "sklearn" and monitor.name == "churn"
    assert monitor.spec.detectors.metrics.classes == [0, 1]
    assert monitor.spec.detectors.explainer is not None  # a classifier: anchors make sense
    # paths relative to the monitor file, as `vigil up` reads them
    assert monitor.spec.model.storage_uri == "churn.joblib"
    assert monitor.spec.reference.storage_uri == "reference.csv"


def test_init_reads_the_width_of_an_array_model_and_names_columns_of_a_headerless_reference(tmp_path):
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    joblib.dump(RandomForestRegressor(n_estimators=5).fit(x, x[:, 0]), tmp_path / "reg.pkl")
    np.savetxt(tmp_path / "ref.csv", x, delimiter=",")
    assert main(["init", str(tmp_path / "reg.pkl"), str(tmp_path / "ref.csv"), "-o", str(tmp_path / "m.yaml")]) == 0
    monitor = load_monitor(tmp_path / "m.yaml")
    assert monitor.spec.schema_.feature_names == [f"f{i}" for i in range(6)]
    assert monitor.spec.detectors.metrics.task == "regression"
    assert monitor.spec.detectors.explainer is None  # anchors need a classifier


def test_init_reads_an_xgboost_model(tmp_path):
    xgb = pytest.importorskip("xgboost")
    frame = reference()
    x = numeric(frame)
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, frame["label"])
    model.save_model(tmp_path / "model.json")
    frame.to_csv(tmp_path / "reference.csv", index=False)
    assert main(["init", str(tmp_path / "model.json"), str(tmp_path / "reference.csv"),
                 "-o", str(tmp_path / "monitor.yaml"), "--name", "Churn Model"]) == 0
    monitor = load_monitor(tmp_path / "monitor.yaml")
    assert monitor.spec.model.format == "xgboost"
    assert monitor.spec.schema_.feature_names == FEATURES  # XGBoost keeps the DataFrame's names
    assert monitor.name == "churn-model"


def test_init_notes_a_width_mismatch_instead_of_guessing_silently(tmp_path):
    from sklearn.linear_model import LogisticRegression

    frame = reference()
    joblib.dump(LogisticRegression(max_iter=500).fit(numeric(frame).to_numpy()[:, :3], frame["label"]),
                tmp_path / "m.joblib")
    frame[["age", "income", "tier", "label"]].to_csv(tmp_path / "ref.csv", index=False)
    assert main(["init", str(tmp_path / "m.joblib"), str(tmp_path / "ref.csv"), "-o", str(tmp_path / "o.yaml")]) == 0
    text = (tmp_path / "o.yaml").read_text()
    assert "# NOTE: the model takes 3 features but the reference has 4 columns" in text
    assert load_monitor(tmp_path / "o.yaml").spec.schema_.feature_names == ["age", "income", "tier"]


def test_init_refuses_to_overwrite_and_reports_bad_files_without_a_traceback(files, capsys):
    out = files / "monitor.yaml"
    out.write_text("mine\n")
    assert main(["init", str(files / "churn.joblib"), str(files / "reference.csv"), "-o", str(out)]) == 2
    assert out.read_text() == "mine\n" and "--force" in capsys.readouterr().err
    (files / "junk.joblib").write_bytes(b"not a pickle")
    result = run("init", str(files / "junk.joblib"), str(files / "reference.csv"), "-o", "-")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot load scikit-learn model" in result.stderr
    result = run("init", str(files / "churn.joblib"), str(files / "missing.csv"), "-o", "-")
    assert result.returncode == 2 and "reference data file not found" in result.stderr


def test_output_into_a_closed_pipe_exits_quietly(files):
    """`vigil init … -o - | head -0`: the reader is gone before vigil writes."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "vigil", "init", str(files / "churn.joblib"),
                               str(files / "reference.csv"), "-o", "-"], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


# -- vigil train -------------------------------------------------------------------------------

@pytest.mark.parametrize("options, field", [
    ('{"epochz": 3}', "detectors.outlier.epochz: unknown field"),
    ('{"thresholdPercentile": 120}', "detectors.outlier.thresholdPercentile"),
    ('{"epochs": 3', "--options: not valid JSON"),
])
def test_train_options_are_parsed_by_the_spec(files, options, field):
    result = run("train", "--component", "outlier", "--reference", str(files / "reference.csv"),
                 "--output", str(files / "out"), "--options", options)
    assert result.returncode == 2, result.stderr
    assert field in result.stderr and "Traceback" not in result.stderr
    assert not (files / "out").exists()


def test_train_out_dir_holds_one_directory_per_detector(files):
    from sklearn.linear_model import LogisticRegression

    frame = reference()
    x = numeric(frame)[["age", "income", "tier"]]
    joblib.dump(LogisticRegression(max_iter=500).fit(x.to_numpy(), frame["label"]), files / "m.joblib")
    x.to_csv(files / "ref.csv", index=False)
    doc = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "t"},
           "spec": {"model": {"storageUri": "m.joblib"}, "schema": {"featureNames": list(x.columns)},
                    "reference": {"storageUri": "ref.csv"},
                    "detectors": {"explainer": {"threshold": 0.9}}}}
    (files / "t.yaml").write_text(yaml.safe_dump(doc))
    out = files / "trained"
    result = run("train", str(files / "t.yaml"), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "explainer").is_dir() and any((out / "explainer").iterdir())
    assert not (out / "artifacts").exists()
    assert f"explainer: saved to {out / 'explainer'}" in result.stdout
    # the trainer's own output (and TensorFlow's start-up lines) went to its log file
    assert (out / "logs" / "train-explainer.log").exists()
    assert "absl" not in result.stdout + result.stderr


@pytest.mark.tensorflow
def test_init_reads_a_keras_input_shape(tmp_path):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 5)).astype("float32")
    tabular = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    tabular.save(tmp_path / "tab.keras")
    np.save(tmp_path / "ref.npy", x)
    assert main(["init", str(tmp_path / "tab.keras"), str(tmp_path / "ref.npy"), "-o", str(tmp_path / "t.yaml")]) == 0
    monitor = load_monitor(tmp_path / "t.yaml")
    assert monitor.spec.model.format == "tensorflow"
    assert monitor.spec.schema_.feature_names == [f"f{i}" for i in range(5)]
    assert monitor.spec.detectors.metrics.classes == [0, 1, 2]

    images = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    images.save(tmp_path / "img.keras")
    np.save(tmp_path / "img.npy", rng.random((20, 8, 8, 1)).astype("float32"))
    assert main(["init", str(tmp_path / "img.keras"), str(tmp_path / "img.npy"), "-o", str(tmp_path / "i.yaml")]) == 0
    doc = yaml.safe_load((tmp_path / "i.yaml").read_text())
    assert doc["spec"]["schema"] == {"shape": [8, 8, 1]}  # DESIGN §8: the shape of one instance
