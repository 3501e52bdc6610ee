"""Config validation: every mistake gets an error that names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workcell.assembly.build import check_buildable
from workcell.assembly.config import DEFAULT_CONFIG, load_config, parse_config
from workcell.errors import ConfigError


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "test.yaml")
    return str(exc.value)


def test_embedded_config_is_valid_and_fully_simulated() -> None:
    cfg = load_config()
    assert cfg.simulated
    assert {d.kind for d in cfg.devices.values()} == {
        "liquid_handler",
        "incubator",
        "cell_counter",
        "imager",
    }


def test_configs_sim_yaml_is_the_embedded_config() -> None:
    shipped = Path(__file__).parents[1] / "configs" / "sim.yaml"
    assert load_config(shipped) == load_config()


def test_unknown_driver_names_the_device(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["incubator"]["driver"] = "liconic-magic"
    msg = _error(sim_data)
    assert "devices.incubator" in msg
    assert "liconic-magic" in msg


def test_missing_port_names_the_field(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["incubator"] = {"kind": "incubator", "driver": "cytomat"}
    msg = _error(sim_data)
    assert "devices.incubator.port: Field required" in msg


def test_two_devices_on_one_port(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["incubator"] = {
        "kind": "incubator",
        "driver": "cytomat",
        "port": "/dev/ttyUSB0",
    }
    sim_data["devices"]["hotel"] = {
        "kind": "incubator",
        "driver": "cytomat",
        "port": "/dev/ttyUSB0",
    }
    msg = _error(sim_data)
    assert "two devices on one port" in msg
    assert "/dev/ttyUSB0" in msg and "hotel" in msg and "incubator" in msg


def test_two_resources_on_one_carrier_site(sim_data: dict[str, Any]) -> None:
    sites = sim_data["deck"]["carriers"][1]["sites"]
    sites[1]["site"] = 0
    msg = _error(sim_data)
    assert "two resources on one deck spot" in msg
    assert "'plate_1'" in msg and "'plate_2'" in msg
    assert "deck.carriers.1" in msg


def test_overlapping_carriers(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["rails"] = 4  # tip carrier occupies rails 1-6
    msg = _error(sim_data)
    assert "two resources on one deck spot" in msg
    assert "'plate_carrier'" in msg and "'tip_carrier'" in msg


def test_unknown_labware_names_the_field(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][0]["labware"] = "my_favourite_6_well"
    msg = _error(sim_data)
    assert "deck.carriers.1.sites.0.labware" in msg
    assert "unknown labware 'my_favourite_6_well'" in msg


def test_carrier_is_not_labware(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][0]["labware"] = "PLT_CAR_L5AC_A00"
    assert "unknown labware" in _error(sim_data)


def test_unknown_carrier(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][0]["type"] = "TIP_CAR_9000"
    msg = _error(sim_data)
    assert "deck.carriers.0.type" in msg and "TIP_CAR_9000" in msg


def test_site_beyond_carrier(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][0]["site"] = 7
    assert "has sites 0-4" in _error(sim_data)


def test_carrier_off_the_deck(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][3]["rails"] = 30
    assert "STARLetDeck has 1-30" in _error(sim_data)


def test_unknown_key_is_an_error(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["counter"]["baud"] = 9600
    msg = _error(sim_data)
    assert "devices.counter.baud" in msg


def test_missing_device_kind(sim_data: dict[str, Any]) -> None:
    del sim_data["devices"]["imager"]
    assert "no imager configured" in _error(sim_data)


def test_duplicate_resource_name(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][1]["name"] = "plate_1"
    assert "'plate_1' is used twice" in _error(sim_data)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


# --- no holes: what building the workcell would refuse, the config refuses -------------


@pytest.mark.parametrize(
    ("where", "key"),
    [
        (("devices", "incubator", "alarms"), "temperature_tolerance"),
        (("devices", "imager", "estimator"), "sigma"),
        (("devices", "imager", "optics"), "pixels"),
    ],
)
def test_nested_device_models_refuse_unknown_keys(
    sim_data: dict[str, Any], where: tuple[str, ...], key: str
) -> None:
    node = sim_data
    for k in where:
        node = node.setdefault(k, {})
    node[key] = 1
    assert f"{'.'.join(where)}.{key}: Extra inputs are not permitted" in _error(sim_data)


def test_a_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.read_text().replace("    channels: 8", "    channels: 8\n    channels: 4")
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"the key 'channels' is given twice \(lines \d+ and"):
        load_config(path)


def test_a_config_that_is_not_utf8_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path)


def test_culture_overrides_and_clock_start_are_checked(sim_data: dict[str, Any]) -> None:
    sim_data["culture"]["overrides"] = {"doubling_time_h": 1, "no_such_parameter": 2}
    msg = _error(sim_data)
    assert "culture.overrides" in msg and "no_such_parameter" in msg and "doubling_time_h" in msg
    sim_data["culture"]["overrides"] = {}
    sim_data["clock"]["start"] = "2026-01-05T08:00:00"
    assert "clock.start: 2026-01-05T08:00:00 has no time zone" in _error(sim_data)


def test_contents_must_fit_their_labware(sim_data: dict[str, Any]) -> None:
    enzyme = sim_data["deck"]["carriers"][2]["sites"][2]
    enzyme["contents"]["volume_mL"] = 900
    assert "'enzyme' (hamilton_1_trough_60mL_Vb) holds 60.0 mL; 900 mL cannot" in _error(sim_data)
    enzyme["contents"]["volume_mL"] = 40
    sim_data["deck"]["carriers"][1]["sites"][0]["contents"] = {"reagent": "pbs", "volume_mL": 5}
    assert "only a reservoir or a tube can be loaded" in _error(sim_data)


@pytest.mark.parametrize("name", ["star/../x", "s" * 300, "../../x", ""])
def test_device_and_workcell_names_are_plain_words(sim_data: dict[str, Any], name: str) -> None:
    sim_data["devices"][name] = sim_data["devices"].pop("star")
    assert "is not a device name" in _error(sim_data)
    sim_data["devices"]["star"] = sim_data["devices"].pop(name)
    sim_data["name"] = name
    assert "name: String should match pattern" in _error(sim_data)


def test_check_config_builds_the_deck_without_devices(sim_data: dict[str, Any]) -> None:
    cfg = parse_config(sim_data)
    check_buildable(cfg)  # the embedded config builds
    sim_data["devices"]["incubator"] = {
        "kind": "incubator",
        "driver": "cytomat",
        "port": "/dev/does-not-exist",
    }
    check_buildable(parse_config(sim_data))  # no port is opened to check a config
