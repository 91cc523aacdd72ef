"""The gateway's command line: the settings round-trip, and the audit log is required."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.gateway.cli import _audit_log, _config, _server_limits, build_parser
from lockgate.gateway.config import GatewayConfig


def test_the_prediction_log_export_survives_the_command_line(tmp_path: Path) -> None:
    config = GatewayConfig(
        state_dir=tmp_path / "gw",
        log_dir=tmp_path / "log",
        upstream_url="http://127.0.0.1:8000",
        prediction_log_url="s3://predictions/fraud",
    )
    argv = config.to_argv()
    assert argv[argv.index("--prediction-log-url") + 1] == "s3://predictions/fraud"
    parser = build_parser()
    args = parser.parse_args([*argv, "--audit-log", str(tmp_path / "audit.jsonl")])
    assert _config(args, _server_limits(args, parser)) == config


@pytest.mark.parametrize(
    "extra",
    [[], ["--audit-log", "a.jsonl", "--audit-url-env", "LOCKGATE_STATE_DB_URL"]],
    ids=["neither", "both"],
)
def test_admin_changes_are_audited_in_exactly_one_place(
    tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    base = ["--state-dir", str(tmp_path), "--log-dir", str(tmp_path), "--upstream-url", "x:1"]
    args = parser.parse_args([*base, *extra])
    with pytest.raises(SystemExit):
        _audit_log(args, parser)
    assert "exactly one of --audit-log PATH or --audit-url-env NAME" in capsys.readouterr().err


def test_an_unset_audit_url_variable_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LG_TEST_NO_SUCH_URL", raising=False)
    parser = build_parser()
    base = ["--state-dir", str(tmp_path), "--log-dir", str(tmp_path), "--upstream-url", "x:1"]
    args = parser.parse_args([*base, "--audit-url-env", "LG_TEST_NO_SUCH_URL"])
    with pytest.raises(SystemExit):
        _audit_log(args, parser)
    assert "LG_TEST_NO_SUCH_URL: the variable is not set" in capsys.readouterr().err
