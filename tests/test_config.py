import pytest

from tests.conftest import tiny_config
from tf_translate import config, registry


def test_json_round_trip(tmp_path):
    cfg = tiny_config("cyclegan", tmp_path, "somewhere", model={"lambda_cycle": 7.5}, data={"domains": ("x", "y")})
    cfg.save(tmp_path / "config.json")
    again = config.load(tmp_path / "config.json")
    assert again == cfg
    assert again.data.domains == ("x", "y") and again.model.lambda_cycle == 7.5


def test_paper_defaults_and_override_order(tmp_path):
    spec = registry.get("cyclegan")
    cfg = config.build("cyclegan", spec.config, spec.overrides)
    m = cfg.model
    assert (m.lambda_cycle, m.lambda_identity * m.lambda_cycle, m.pool_size, m.gan_loss) == (10.0, 5.0, 50, "lsgan")
    assert (cfg.train.lr, cfg.train.beta_1, cfg.data.load_size, cfg.data.crop_size) == (2e-4, 0.5, 286, 256)
    file_layer = {"model": {"lambda_cycle": 3.0, "pool_size": 10}}
    flags = {"model": {"lambda_cycle": 4.0}}
    cfg = config.build("cyclegan", spec.config, spec.overrides, spec.demo, file_layer, flags)
    assert cfg.model.lambda_cycle == 4.0 and cfg.model.pool_size == 10 and cfg.data.crop_size == 64


def test_unknown_option_is_named(tmp_path):
    spec = registry.get("cyclegan")
    with pytest.raises(ValueError, match="lambda_cylce"):
        config.build("cyclegan", spec.config, {"model": {"lambda_cylce": 1.0}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        config.read_layer(bad)


def test_registry_names_capabilities():
    # Gatys optimises one image and has no network to export or distribute: its command runs it
    assert "gatys" in registry.names() and registry.get("gatys").command == "stylize"
    assert "gatys" not in registry.names(exportable=True) + registry.names(distributable=True)
    with pytest.raises(ValueError, match="available: .*cyclegan"):
        registry.get("cyclegann")
