"""`captionkit serve` arguments: model names, and no exposure beyond this machine without an API key."""

from __future__ import annotations

import pytest

from captionkit.cli import main
from captionkit.cli.serve import check_host, parse_model_specs
from captionkit.errors import ConfigError


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_a_non_loopback_host_needs_an_api_key(host, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.delenv("CAPTIONKIT_API_KEY", raising=False)
    assert main(["serve", str(tiny_model_dir), "--host", host]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--host {host}: serving beyond this machine needs an API key" in err
    check_host(host, "a-key")  # with a key it is allowed


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_need_no_key(host):
    check_host(host, None)


def test_models_are_named_by_directory_or_name_equals_dir(tiny_model_dir, tmp_path):
    assert parse_model_specs([str(tiny_model_dir)]) == {"model": tiny_model_dir}
    assert parse_model_specs([f"small={tiny_model_dir}", f"other={tiny_model_dir}"]) == {
        "small": tiny_model_dir,
        "other": tiny_model_dir,
    }
    with pytest.raises(ConfigError, match="two models are named 'model'; name them with NAME=DIR"):
        parse_model_specs([str(tiny_model_dir), str(tiny_model_dir)])
    with pytest.raises(ConfigError, match="must be letters.*not 'all'"):
        parse_model_specs([f"all={tiny_model_dir}"])


def test_a_wrong_directory_or_setting_is_one_line(tmp_path, tiny_model_dir, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "config.json: missing" in capsys.readouterr().err
    assert main(["serve", str(tiny_model_dir), "--max-batch", "0"]) == 2
    assert "max_batch must be >= 1" in capsys.readouterr().err
