"""The committed CRD files are exactly what `python -m vigil.crd` makes from the spec models.

A change to vigil/spec.py (a field, default, bound or description) without regenerating
fails here, with the command to run.
"""

from __future__ import annotations

import copy

import pytest

from vigil import crd


@pytest.mark.parametrize("path", crd.TARGETS, ids=lambda p: str(p.relative_to(crd.ROOT)))
def test_committed_crd_is_generated(path):
    assert path.read_text() == crd.render(), f"{path.relative_to(crd.ROOT)} is stale: run python -m vigil.crd"


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / crd.FILE_NAME
    stale.write_text(crd.render().replace("default: 0.05", "default: 0.1"))
    monkeypatch.setattr(crd, "TARGETS", (stale,))
    monkeypatch.setattr(crd, "ROOT", tmp_path)
    assert crd.main(["--check"]) == 1 and "run python -m vigil.crd" in capsys.readouterr().err
    assert crd.main([]) == 0 and stale.read_text() == crd.render()
    assert crd.main(["--check"]) == 0


def test_a_model_field_reaches_the_crd(monkeypatch):
    """Generated, not copied: a default changed in the model changes the CRD."""
    from vigil.spec import LoggerSpec

    field = copy.deepcopy(LoggerSpec.model_fields["queue_size"])
    original, field.default = field.default, 123
    monkeypatch.setitem(LoggerSpec.model_fields, "queue_size", field)
    LoggerSpec.model_rebuild(force=True)
    try:
        logger = crd.open_api_schema()["properties"]["spec"]["properties"]["logger"]["properties"]
        assert logger["queueSize"]["default"] == 123
    finally:
        monkeypatch.undo()
        LoggerSpec.model_rebuild(force=True)
    logger = crd.open_api_schema()["properties"]["spec"]["properties"]["logger"]["properties"]
    assert logger["queueSize"]["default"] == original


def test_a_description_lives_in_one_place(monkeypatch):
    monkeypatch.setitem(crd.DESCRIPTIONS, "spec.detectors.drift.window.step", "twice")
    with pytest.raises(ValueError, match="described by the model"):
        crd.open_api_schema()
    monkeypatch.setitem(crd.DESCRIPTIONS, "spec.nothing", "stale")
    monkeypatch.delitem(crd.DESCRIPTIONS, "spec.detectors.drift.window.step")
    with pytest.raises(ValueError, match="do not have"):
        crd.open_api_schema()
